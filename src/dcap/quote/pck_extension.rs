//! The SGX extension of a PCK leaf certificate (OID 1.2.840.113741.1.13.1): the
//! platform's FMSPC, PCE ID and TCB component SVNs (`reference/dcap-verification.md` §3).

use x509_parser::certificate::X509Certificate;
use x509_parser::der_parser::ber::BerObject;
use x509_parser::der_parser::der::parse_der;
use x509_parser::der_parser::oid::Oid;

use crate::dcap::ids::{CpuSvn, Fmspc, PceId};

/// What the verifier needs from the PCK certificate's SGX extension.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PckTcb {
    /// SGX TCB component SVNs 1..16.
    pub(crate) components: [u8; 16],
    /// PCE SVN.
    pub(crate) pce_svn: u16,
    /// CPUSVN as recorded in the certificate.
    pub(crate) cpu_svn: CpuSvn,
    /// The platform model.
    pub(crate) fmspc: Fmspc,
    /// The PCE.
    pub(crate) pce_id: PceId,
}

/// `1.2.840.113741.1.13.1`: Intel SGX extensions.
const SGX_EXTENSION: &[u64] = &[1, 2, 840, 113_741, 1, 13, 1];
const TCB: u64 = 2;
const PCE_ID: u64 = 3;
const FMSPC: u64 = 4;
const TCB_PCESVN: u64 = 17;
const TCB_CPUSVN: u64 = 18;

/// Reads the SGX extension; duplicates, missing entries and wrong types are errors.
pub(crate) fn parse(cert: &X509Certificate<'_>) -> Result<PckTcb, String> {
    let oid = Oid::from(SGX_EXTENSION).map_err(|_| "bad OID constant".to_string())?;
    let ext = cert
        .get_extension_unique(&oid)
        .map_err(|_| "the SGX extension appears more than once".to_string())?
        .ok_or("the PCK certificate has no SGX extension (1.2.840.113741.1.13.1)")?;
    let (rest, top) = parse_der(ext.value).map_err(|e| format!("SGX extension is not DER: {e}"))?;
    if !rest.is_empty() {
        return Err("trailing bytes after the SGX extension".into());
    }

    let mut tcb = None;
    let mut pce_id = None;
    let mut fmspc = None;
    for (arc, value) in entries(&top, SGX_EXTENSION)? {
        let slot = match arc {
            TCB => &mut tcb,
            PCE_ID => &mut pce_id,
            FMSPC => &mut fmspc,
            _ => continue,
        };
        if slot.replace(value).is_some() {
            return Err(format!("SGX extension entry .{arc} appears twice"));
        }
    }

    let tcb = tcb.ok_or("SGX extension has no TCB entry")?;
    let mut components = [None::<u8>; 16];
    let mut pce_svn = None;
    let mut cpu_svn = None;
    let tcb_arc: Vec<u64> = SGX_EXTENSION.iter().copied().chain([TCB]).collect();
    for (arc, value) in entries(tcb, &tcb_arc)? {
        match arc {
            1..=16 => {
                let index =
                    usize::try_from(arc.saturating_sub(1)).map_err(|_| "bad TCB component")?;
                let svn = value
                    .as_u32()
                    .map_err(|_| format!("TCB component {arc} is not an integer"))?;
                let svn = u8::try_from(svn)
                    .map_err(|_| format!("TCB component {arc} = {svn} is above 255"))?;
                let slot = components.get_mut(index).ok_or("bad TCB component")?;
                if slot.replace(svn).is_some() {
                    return Err(format!("TCB component {arc} appears twice"));
                }
            }
            TCB_PCESVN => {
                let v = value.as_u32().map_err(|_| "PCESVN is not an integer")?;
                let v = u16::try_from(v).map_err(|_| "PCESVN is above 65535")?;
                if pce_svn.replace(v).is_some() {
                    return Err("PCESVN appears twice".into());
                }
            }
            TCB_CPUSVN => {
                let bytes = value
                    .as_slice()
                    .map_err(|_| "CPUSVN is not an OCTET STRING")?;
                let arr: [u8; 16] = bytes.try_into().map_err(|_| "CPUSVN is not 16 bytes")?;
                if cpu_svn.replace(CpuSvn(arr)).is_some() {
                    return Err("CPUSVN appears twice".into());
                }
            }
            _ => {}
        }
    }
    let mut comps = [0u8; 16];
    for (i, (out, c)) in comps.iter_mut().zip(components).enumerate() {
        *out = c.ok_or_else(|| format!("TCB component {} is missing", i.saturating_add(1)))?;
    }

    let octets = |o: &BerObject<'_>, what: &str| -> Result<Vec<u8>, String> {
        o.as_slice()
            .map(<[u8]>::to_vec)
            .map_err(|_| format!("{what} is not an OCTET STRING"))
    };
    let fmspc = octets(fmspc.ok_or("SGX extension has no FMSPC")?, "FMSPC")?;
    let pce_id = octets(pce_id.ok_or("SGX extension has no PCE-ID")?, "PCE-ID")?;
    Ok(PckTcb {
        components: comps,
        pce_svn: pce_svn.ok_or("TCB has no PCESVN")?,
        cpu_svn: cpu_svn.ok_or("TCB has no CPUSVN")?,
        fmspc: Fmspc(fmspc.try_into().map_err(|_| "FMSPC is not 6 bytes")?),
        pce_id: PceId(pce_id.try_into().map_err(|_| "PCE-ID is not 2 bytes")?),
    })
}

/// The `SEQUENCE { OID, value }` entries of a sequence whose OIDs extend `prefix` by one arc.
fn entries<'a, 'b>(
    seq: &'b BerObject<'a>,
    prefix: &[u64],
) -> Result<Vec<(u64, &'b BerObject<'a>)>, String> {
    let items = seq
        .as_sequence()
        .map_err(|_| "SGX extension entry is not a SEQUENCE")?;
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let pair = item
            .as_sequence()
            .map_err(|_| "SGX extension entry is not a SEQUENCE")?;
        let [oid, value] = pair.as_slice() else {
            return Err("SGX extension entry is not an (OID, value) pair".into());
        };
        let oid = oid.as_oid().map_err(|_| "SGX extension entry has no OID")?;
        let arcs: Vec<u64> = oid
            .iter()
            .ok_or("SGX extension OID arc too large")?
            .collect();
        match arcs.split_last() {
            Some((last, head)) if head == prefix => out.push((*last, value)),
            _ => return Err(format!("unexpected OID {oid} in the SGX extension")),
        }
    }
    Ok(out)
}
