//! The AMD extensions of a VCEK or VLEK certificate ("Versioned Chip Endorsement Key (VCEK)
//! Certificate and KDS Interface Specification", tables of X.509 extensions): structure
//! version, product name, the TCB's SPLs, and the chip's hardware ID (VCEK) or the cloud
//! provider's ID (VLEK). Each at most once; an unknown or critical AMD extension is refused.
//!
//! Encodings as KDS serves them: the SPLs and the structure version are DER INTEGERs, the
//! product name and CSP ID IA5Strings, the hardware ID the raw bytes without a DER header
//! (64 bytes; 8 on Turin, structure version 1).

use x509_parser::certificate::X509Certificate;
use x509_parser::der_parser::der::{parse_der_ia5string, parse_der_integer};

use super::error::{CertRole, SnpError};
use super::product::Product;

/// `1.3.6.1.4.1.3704.1`: AMD's VCEK/VLEK extension arc.
const AMD_ARC: &[u64] = &[1, 3, 6, 1, 4, 1, 3704, 1];

/// A VCEK's or VLEK's extensions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VekExtensions {
    /// `.1.1` structVersion: 0 (Milan, Genoa) or 1 (Turin: FMC, 8-byte hwID).
    pub struct_version: u8,
    /// `.1.2` productName (`Milan-B0`, `Genoa`, `Turin`).
    pub product_name: String,
    /// `.1.3.1` blSPL.
    pub bootloader: u8,
    /// `.1.3.2` teeSPL.
    pub tee: u8,
    /// `.1.3.3` snpSPL.
    pub snp: u8,
    /// `.1.3.4`–`.1.3.7` reserved SPLs, where present.
    pub reserved_spl: [Option<u8>; 4],
    /// `.1.3.8` ucodeSPL.
    pub microcode: u8,
    /// `.1.3.9` fmcSPL (Turin).
    pub fmc: Option<u8>,
    /// `.1.4` hwID (VCEK only).
    pub hwid: Option<Vec<u8>>,
    /// `.1.5` CSP ID (VLEK only).
    pub csp_id: Option<String>,
}

impl VekExtensions {
    /// The product the productName extension names.
    pub fn product(&self) -> Option<Product> {
        Product::from_product_name(&self.product_name)
    }
}

/// The dotted names, for errors.
const NAMES: [&str; 15] = [
    "1.3.6.1.4.1.3704.1.1",
    "1.3.6.1.4.1.3704.1.2",
    "1.3.6.1.4.1.3704.1.3.1",
    "1.3.6.1.4.1.3704.1.3.2",
    "1.3.6.1.4.1.3704.1.3.3",
    "1.3.6.1.4.1.3704.1.3.4",
    "1.3.6.1.4.1.3704.1.3.5",
    "1.3.6.1.4.1.3704.1.3.6",
    "1.3.6.1.4.1.3704.1.3.7",
    "1.3.6.1.4.1.3704.1.3.8",
    "1.3.6.1.4.1.3704.1.3.9",
    "1.3.6.1.4.1.3704.1.4",
    "1.3.6.1.4.1.3704.1.5",
    "1.3.6.1.4.1.3704.1",
    "",
];
const STRUCT_VERSION: usize = 0;
const PRODUCT_NAME: usize = 1;
const SPL_FIRST: usize = 2; // .3.1 .. .3.9 at 2..=10
const HWID: usize = 11;
const CSP_ID: usize = 12;
const UNKNOWN: usize = 13;

/// The slot an OID's arcs below AMD's arc map to.
fn slot(tail: &[u64]) -> usize {
    match tail {
        [1] => STRUCT_VERSION,
        [2] => PRODUCT_NAME,
        [3, n @ 1..=9] => usize::try_from(*n)
            .ok()
            .and_then(|n| n.checked_add(SPL_FIRST - 1))
            .unwrap_or(UNKNOWN),
        [4] => HWID,
        [5] => CSP_ID,
        _ => UNKNOWN,
    }
}

/// Reads the AMD extensions of `cert` in the role of a VCEK or VLEK.
pub fn parse(cert: &X509Certificate<'_>, role: CertRole) -> Result<VekExtensions, SnpError> {
    let err = |slot: usize, detail: String| SnpError::Extension {
        role,
        oid: NAMES.get(slot).copied().unwrap_or(""),
        detail,
    };
    let mut values: [Option<&[u8]>; 13] = [None; 13];
    for ext in cert.extensions() {
        let Some(arcs) = ext.oid.iter() else {
            continue;
        };
        let arcs: Vec<u64> = arcs.collect();
        let Some(tail) = arcs.strip_prefix(AMD_ARC) else {
            if ext.critical {
                // x509-parser has already parsed the standard extensions it knows.
                if matches!(
                    ext.parsed_extension(),
                    x509_parser::extensions::ParsedExtension::UnsupportedExtension { .. }
                ) {
                    return Err(err(
                        UNKNOWN,
                        format!("unknown critical extension {}", ext.oid),
                    ));
                }
            }
            continue;
        };
        let at = slot(tail);
        if at == UNKNOWN {
            return Err(err(UNKNOWN, format!("unknown AMD extension {}", ext.oid)));
        }
        if ext.critical {
            return Err(err(at, "marked critical".into()));
        }
        let Some(place) = values.get_mut(at) else {
            return Err(err(UNKNOWN, "bad slot".into()));
        };
        if place.replace(ext.value).is_some() {
            return Err(err(at, "appears more than once".into()));
        }
    }
    let get = |at: usize| values.get(at).copied().flatten();
    let required = |at: usize| get(at).ok_or_else(|| err(at, "missing".into()));
    let int = |at: usize, v: &[u8]| -> Result<u8, SnpError> {
        match parse_der_integer(v) {
            Ok(([], obj)) => obj
                .as_u32()
                .ok()
                .and_then(|n| u8::try_from(n).ok())
                .ok_or_else(|| err(at, "not an INTEGER in 0..=255".into())),
            _ => Err(err(at, "not a DER INTEGER".into())),
        }
    };
    let ia5 = |at: usize, v: &[u8]| -> Result<String, SnpError> {
        match parse_der_ia5string(v) {
            Ok(([], obj)) => obj
                .as_str()
                .map(str::to_owned)
                .map_err(|_| err(at, "not an IA5String".into())),
            _ => Err(err(at, "not a DER IA5String".into())),
        }
    };

    let struct_version = int(STRUCT_VERSION, required(STRUCT_VERSION)?)?;
    let product_name = ia5(PRODUCT_NAME, required(PRODUCT_NAME)?)?;
    let spl = |n: usize| -> Result<Option<u8>, SnpError> {
        let at = SPL_FIRST.saturating_add(n).saturating_sub(1);
        get(at).map(|v| int(at, v)).transpose()
    };
    let need = |n: usize| -> Result<u8, SnpError> {
        let at = SPL_FIRST.saturating_add(n).saturating_sub(1);
        spl(n)?.ok_or_else(|| err(at, "missing".into()))
    };
    let bootloader = need(1)?;
    let tee = need(2)?;
    let snp = need(3)?;
    let reserved_spl = [spl(4)?, spl(5)?, spl(6)?, spl(7)?];
    let microcode = need(8)?;
    let fmc = spl(9)?;
    let hwid = get(HWID).map(<[u8]>::to_vec);
    let csp_id = get(CSP_ID).map(|v| ia5(CSP_ID, v)).transpose()?;

    match struct_version {
        0 if fmc.is_some() => {
            return Err(err(
                SPL_FIRST + 8,
                "fmcSPL in a structure version 0 certificate".into(),
            ))
        }
        1 if fmc.is_none() => {
            return Err(err(SPL_FIRST + 8, "missing (structure version 1)".into()))
        }
        0 | 1 => {}
        v => {
            return Err(err(
                STRUCT_VERSION,
                format!("unknown structure version {v}"),
            ))
        }
    }
    if reserved_spl.iter().flatten().any(|s| *s != 0) {
        return Err(err(SPL_FIRST + 3, "a reserved SPL is not zero".into()));
    }
    match (role, &hwid, &csp_id) {
        (CertRole::Vcek, Some(id), None) => {
            let want = if struct_version == 1 { 8 } else { 64 };
            if id.len() != want {
                return Err(err(HWID, format!("{} bytes, expected {want}", id.len())));
            }
        }
        (CertRole::Vcek, None, _) => return Err(err(HWID, "missing in a VCEK".into())),
        (CertRole::Vcek, Some(_), Some(_)) => return Err(err(CSP_ID, "present in a VCEK".into())),
        (CertRole::Vlek, None, Some(_)) => {}
        (CertRole::Vlek, Some(_), _) => return Err(err(HWID, "present in a VLEK".into())),
        (CertRole::Vlek, None, None) => return Err(err(CSP_ID, "missing in a VLEK".into())),
        _ => return Err(err(UNKNOWN, format!("{role} carries no VEK extensions"))),
    }
    Ok(VekExtensions {
        struct_version,
        product_name,
        bootloader,
        tee,
        snp,
        reserved_spl,
        microcode,
        fmc,
        hwid,
        csp_id,
    })
}
