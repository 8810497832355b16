//! PURE. Key binding: REPORTDATA[0..32] must commit to the certificate's public key.
//!
//! - Cosmian: SHA-256 of the uncompressed EC point `04‖X‖Y`;
//! - Gramine legacy: SHA-256 of the SubjectPublicKeyInfo DER;
//! - Gramine DICE: SHA-256 of the embedded claims, whose `pubkey-hash` is the SPKI hash;
//! - dstack (TDX, its OIDs `1.3.6.1.4.1.62397.1.8`, and `.1.1` with its `.1.2` event log;
//!   `evidence::find` refuses `.1.1` alone): all 64 bytes are SHA-512(`"ratls-cert:"` ‖ SPKI
//!   DER), dstack's `QuoteContentType::RaTlsCert`; the attestation's own report data must be
//!   the quote's too.
//!
//! REPORTDATA[32..64] is application data (Cosmian puts an X25519 key there) and is never
//! required to be zero. Both hashes commit to the same key, so `auto` is safe.

use sha2::{Digest, Sha256, Sha384, Sha512};

use super::evidence::{self, Evidence};
use crate::dcap::ids::ReportData;

/// Which binding rules a policy accepts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum BindingMode {
    /// Cosmian or Gramine.
    #[default]
    Auto,
    /// Only SHA-256 of the uncompressed point.
    Cosmian,
    /// Only the SPKI hash (legacy) or the DICE claims.
    Gramine,
    /// Only dstack's SHA-512 of the tagged SPKI.
    Dstack,
}

impl std::str::FromStr for BindingMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "cosmian" => Ok(Self::Cosmian),
            "gramine" => Ok(Self::Gramine),
            "dstack" => Ok(Self::Dstack),
            other => Err(format!(
                "unknown binding `{other}` (auto, cosmian, gramine, dstack)"
            )),
        }
    }
}

/// The binding rule that matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binding {
    /// SHA-256 of the uncompressed point.
    Cosmian,
    /// SHA-256 of the SPKI DER, directly or through DICE claims.
    Gramine,
    /// SHA-512 of `ratls-cert:` and the SPKI DER (dstack).
    Dstack,
    /// A Nitro document's `user_data` is the SPKI DER (Evervault's subjectAltName carrier).
    Evervault,
}

impl Binding {
    /// Name used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cosmian => "cosmian",
            Self::Gramine => "gramine",
            Self::Dstack => "dstack",
            Self::Evervault => "evervault",
        }
    }
}

/// The certificate key in the two forms the rules hash.
#[derive(Clone, Copy, Debug)]
pub struct CertKey<'a> {
    /// The SubjectPublicKeyInfo DER.
    pub spki_der: &'a [u8],
    /// The subjectPublicKey BIT STRING contents (the EC point for EC keys).
    pub point: &'a [u8],
}

/// Checks that `report_data` commits to `key` under `mode`.
pub fn check(
    mode: BindingMode,
    evidence: &Evidence<'_>,
    report_data: &ReportData,
    key: CertKey<'_>,
) -> Result<Binding, String> {
    let committed = report_data.0.get(..32).unwrap_or_default();
    match evidence {
        Evidence::Dice { claims, .. } => {
            if !matches!(mode, BindingMode::Auto | BindingMode::Gramine) {
                return Err(format!(
                    "the certificate carries TCG DICE evidence (Gramine's claims rule), the policy requires the {} binding",
                    if mode == BindingMode::Cosmian { "Cosmian" } else { "dstack" }
                ));
            }
            if Sha256::digest(claims).as_slice() != committed {
                return Err(format!(
                    "REPORTDATA[0..32] {} is not SHA-256 of the DICE claims",
                    hex::encode(committed)
                ));
            }
            let (alg, digest) = evidence::dice_pubkey_hash(claims).map_err(|e| e.to_string())?;
            let want: Vec<u8> = match alg {
                1 => Sha256::digest(key.spki_der).to_vec(),
                7 => Sha384::digest(key.spki_der).to_vec(),
                8 => Sha512::digest(key.spki_der).to_vec(),
                other => {
                    return Err(format!(
                        "DICE pubkey-hash uses unsupported hash algorithm {other}"
                    ))
                }
            };
            if digest == want.as_slice() {
                Ok(Binding::Gramine)
            } else {
                Err("the DICE pubkey-hash claim does not match the certificate key".into())
            }
        }
        Evidence::Dstack(att) => {
            if !matches!(mode, BindingMode::Auto | BindingMode::Dstack) {
                return Err(
                    "the certificate carries a dstack attestation, the policy requires another binding"
                        .into(),
                );
            }
            crate::dstack::binding::check(att, key.spki_der, &report_data.0)
                .map(|()| Binding::Dstack)
                .map_err(|e| e.to_string())
        }
        Evidence::Raw { .. } if mode == BindingMode::Dstack => Err(
            "the policy requires the dstack binding, the certificate is not a dstack one".into(),
        ),
        Evidence::Raw { .. } => {
            let cosmian = Sha256::digest(key.point);
            let gramine = Sha256::digest(key.spki_der);
            let try_cosmian = matches!(mode, BindingMode::Auto | BindingMode::Cosmian);
            let try_gramine = matches!(mode, BindingMode::Auto | BindingMode::Gramine);
            if try_cosmian && cosmian.as_slice() == committed {
                Ok(Binding::Cosmian)
            } else if try_gramine && gramine.as_slice() == committed {
                Ok(Binding::Gramine)
            } else {
                let detail = match mode {
                    BindingMode::Auto => format!(
                        "neither SHA-256 of the key point ({}) nor of the SPKI ({})",
                        hex::encode(cosmian),
                        hex::encode(gramine)
                    ),
                    BindingMode::Cosmian => {
                        format!("not SHA-256 of the key point ({})", hex::encode(cosmian))
                    }
                    BindingMode::Gramine | BindingMode::Dstack => {
                        format!("not SHA-256 of the SPKI ({})", hex::encode(gramine))
                    }
                };
                Err(format!(
                    "REPORTDATA[0..32] {} is {detail}",
                    hex::encode(committed)
                ))
            }
        }
    }
}

/// dstack's REPORTDATA for an RA-TLS certificate key: SHA-512(`ratls-cert:` ‖ `spki_der`)
/// (defined, with its test vector, in the pure core's `dstack::binding`).
pub fn dstack_report_data(spki_der: &[u8]) -> [u8; 64] {
    crate::dstack::binding::ratls_cert_report_data(spki_der)
}
