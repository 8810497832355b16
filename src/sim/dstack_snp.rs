//! The simulated SEV-SNP guest behind dstack: the sim AMD PKI of a PKI directory (its ARKs
//! in `DIR/amd-ark.pem`, an offline KDS directory in `DIR/collateral/amd/`: each product's
//! `cert_chain`, CRL and the sim chip's VCEK), and the `.1.8` attestation (SCALE V0 or
//! MessagePack V1, platform `sev-snp`) of a report signed by the sim VCEK whose REPORT_DATA
//! is dstack's hash of the certificate key and HOST_DATA the hash of the carried
//! `mr_config`. Each way of breaking it a test needs is a field of [`SnpSimSpec`].

use std::path::Path;
use std::sync::Arc;

use rcgen::{CustomExtension, KeyPair, PublicKeyData as _};
use serde::{Deserialize, Serialize};

use super::dstack::{compact, scale_bytes, DstackWire};
use super::pki::SimError;
use super::snp::{pem, sim_chip_id, sim_tcb, ReportSpec, SimSnpPki, SimVek, VekSpec};
use crate::dcap::time::UnixTime;
use crate::dstack::binding::{mr_config_host_data, ratls_cert_report_data};
use crate::ratls::evidence::OID_DSTACK_ATTESTATION;
use crate::snp::ids::ChipId;
use crate::snp::{Ark, Product, SnpTrust};

/// The sim state file in the PKI directory.
const STATE: &str = "amd-sim.json";
/// The ARKs, for `[collateral] amd_trust_root`.
pub const ARK_FILE: &str = "amd-ark.pem";
/// The offline KDS directory, for `[collateral] amd_kds`.
pub const KDS_DIR: &str = "collateral/amd";

#[derive(Clone, Debug, Serialize, Deserialize)]
struct StoredVek {
    der: String,
    key: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct StoredProduct {
    product: String,
    ark: String,
    ask: String,
    /// The VCEK of the sim chip ([`sim_chip_id`]) at the sim TCB.
    vcek: StoredVek,
    /// The VCEK of another chip at the same TCB (never in the KDS directory).
    other_vcek: StoredVek,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Stored {
    created: i64,
    products: Vec<StoredProduct>,
}

/// The sim AMD PKI of one PKI directory: ARKs, ASKs and VCEKs of every product.
#[derive(Clone, Debug)]
pub struct SnpSim {
    stored: Stored,
}

/// Another chip's CHIP_ID (the sim chip's, every byte flipped where the product uses it).
pub fn other_chip_id(product: Product) -> ChipId {
    let mut id = sim_chip_id(product).0;
    let len = if product == Product::Turin { 8 } else { 64 };
    id.iter_mut().take(len).for_each(|b| *b ^= 0xff);
    ChipId(id)
}

fn unhex(s: &str) -> Result<Vec<u8>, SimError> {
    hex::decode(s).map_err(|e| SimError::Format(format!("{STATE}: {e}")))
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SimError {
    let path = path.to_path_buf();
    move |source| SimError::Io { path, source }
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), SimError> {
    let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

impl SnpSim {
    fn generate(now: UnixTime) -> Result<Stored, SimError> {
        let mut products = Vec::new();
        for product in Product::ALL {
            let pki = SimSnpPki::new(product, now)?;
            let vek = |chip| -> Result<StoredVek, SimError> {
                let v = pki.vek(&VekSpec::vcek(chip, sim_tcb(product)))?;
                Ok(StoredVek {
                    der: hex::encode(&v.der),
                    key: hex::encode(&v.key_pkcs8),
                })
            };
            products.push(StoredProduct {
                product: product.name().to_owned(),
                ark: hex::encode(&pki.ark),
                ask: hex::encode(&pki.ask),
                vcek: vek(sim_chip_id(product))?,
                other_vcek: vek(other_chip_id(product))?,
            });
        }
        Ok(Stored {
            created: now.0,
            products,
        })
    }

    /// Loads the sim AMD PKI of `dir`, or creates it there (concurrent starters agree on
    /// one); writes `DIR/amd-ark.pem` and the offline KDS directory `DIR/collateral/amd/`.
    pub fn load_or_create(dir: &Path, now: UnixTime) -> Result<Self, SimError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let state = dir.join(STATE);
        if !state.exists() {
            let json = serde_json::to_vec_pretty(&Self::generate(now)?)
                .map_err(|e| SimError::Format(e.to_string()))?;
            let tmp = dir.join(format!(".{STATE}.{}.tmp", std::process::id()));
            std::fs::write(&tmp, json).map_err(io(&tmp))?;
            // hard_link fails if another starter won the race; then use theirs.
            let _ = std::fs::hard_link(&tmp, &state);
            let _ = std::fs::remove_file(&tmp);
        }
        let bytes = std::fs::read(&state).map_err(io(&state))?;
        let stored: Stored = serde_json::from_slice(&bytes)
            .map_err(|e| SimError::Format(format!("{}: {e}", state.display())))?;
        let sim = Self { stored };
        let arks = dir.join(ARK_FILE);
        if !arks.exists() {
            write(&arks, sim.ark_pem()?.as_bytes())?;
        }
        let kds = dir.join(KDS_DIR);
        if !kds.join("milan-vcek.pem").exists() {
            sim.write_kds_dir(&kds, &[])?;
        }
        Ok(sim)
    }

    fn product(&self, product: Product) -> Result<&StoredProduct, SimError> {
        self.stored
            .products
            .iter()
            .find(|p| p.product == product.name())
            .ok_or_else(|| SimError::Format(format!("{STATE} holds no {product}")))
    }

    /// Every product's ARK, PEM (what `[collateral] amd_trust_root` reads).
    pub fn ark_pem(&self) -> Result<String, SimError> {
        let mut out = String::new();
        for p in &self.stored.products {
            out.push_str(&pem(&unhex(&p.ark)?));
        }
        Ok(out)
    }

    /// The sim ARKs as a trust (for in-process verification).
    pub fn trust(&self) -> Result<SnpTrust, SimError> {
        let mut arks = Vec::new();
        for product in Product::ALL {
            let der = unhex(&self.product(product)?.ark)?;
            arks.push(Ark::from_der(product, der).map_err(|e| SimError::Format(e.to_string()))?);
        }
        Ok(SnpTrust::with_arks(arks))
    }

    /// `product`'s ARK (DER).
    pub fn ark(&self, product: Product) -> Result<Vec<u8>, SimError> {
        unhex(&self.product(product)?.ark)
    }

    /// `product`'s ASK (DER).
    pub fn ask(&self, product: Product) -> Result<Vec<u8>, SimError> {
        unhex(&self.product(product)?.ask)
    }

    /// The VCEK of the sim chip, or (`other`) of another chip, with its signing key.
    pub fn vcek(&self, product: Product, other: bool) -> Result<SimVek, SimError> {
        let p = self.product(product)?;
        let v = if other { &p.other_vcek } else { &p.vcek };
        let der = unhex(&v.der)?;
        Ok(SimVek {
            pem: pem(&der),
            der,
            key_pkcs8: unhex(&v.key)?,
        })
    }

    /// Writes an offline KDS directory into `dir`: per product `cert_chain` (ASK, ARK), a
    /// CRL signed by the ARK (valid from an hour before creation for a year, revoking the
    /// ASK when `product` is in `revoke_ask`) and the sim chip's VCEK.
    pub fn write_kds_dir(&self, dir: &Path, revoke_ask: &[Product]) -> Result<(), SimError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let created = UnixTime(self.stored.created);
        for product in Product::ALL {
            let p = self.product(product)?;
            let name = product.name().to_lowercase();
            let chain = format!("{}{}", pem(&unhex(&p.ask)?), pem(&unhex(&p.ark)?));
            write(
                &dir.join(format!("{name}-cert_chain.pem")),
                chain.as_bytes(),
            )?;
            write(
                &dir.join(format!("{name}-vcek.pem")),
                pem(&unhex(&p.vcek.der)?).as_bytes(),
            )?;
            // The ARK key is fixed per product: a fresh sim PKI signs CRLs the stored ARK
            // verifies.
            let signer = SimSnpPki::new(product, created)?;
            let from = UnixTime(created.0.saturating_sub(3600));
            let revoked: &[u64] = if revoke_ask.contains(&product) {
                &[super::snp::ASK_SERIAL]
            } else {
                &[]
            };
            let crl = signer.crl(from, UnixTime(from.0.saturating_add(365 * 86_400)), revoked)?;
            write(&dir.join(format!("{name}.crl")), &crl)?;
        }
        Ok(())
    }
}

/// One simulated SEV-SNP guest behind dstack, and what to break.
#[derive(Clone, Debug)]
pub struct SnpSimSpec {
    /// The sim AMD PKI whose VCEK signs.
    pub sim: Arc<SnpSim>,
    /// The product line.
    pub product: Product,
    /// The report's fields (REPORT_DATA and HOST_DATA are set from the key and `mr_config`).
    pub report: ReportSpec,
    /// `v0` (SCALE) or `v1` (MessagePack).
    pub wire: DstackWire,
    /// The `mr_config` document carried (HOST_DATA commits to it).
    pub mr_config: String,
    /// Carry the ASK and the signing VCEK in the attestation's `cert_chain`.
    pub carry_chain: bool,
    /// Carry the product's ARK too (a copy, which must equal the pinned one).
    pub carry_ark: bool,
    /// Sign with another chip's VCEK (and carry that one), the report naming the sim chip.
    pub other_chip: bool,
    /// Bind REPORT_DATA to another key than the certificate's.
    pub wrong_key: bool,
    /// HOST_DATA not the hash of the carried `mr_config`.
    pub wrong_host_data: bool,
}

impl SnpSimSpec {
    /// A non-debug guest with `measurement` on `product`'s sim chip, V1, nothing broken.
    pub fn new(sim: Arc<SnpSim>, product: Product, measurement: [u8; 48]) -> Self {
        Self {
            sim,
            product,
            report: ReportSpec {
                measurement,
                ..ReportSpec::new(product)
            },
            wire: DstackWire::V1,
            mr_config: sim_mr_config(),
            carry_chain: false,
            carry_ark: false,
            other_chip: false,
            wrong_key: false,
            wrong_host_data: false,
        }
    }

    /// The HOST_DATA the sim's report carries unless told otherwise.
    pub fn host_data(&self) -> [u8; 32] {
        mr_config_host_data(self.mr_config.as_bytes())
    }
}

/// The `mr_config` document the sim guests carry.
pub fn sim_mr_config() -> String {
    format!(
        r#"{{"version":3,"compose_hash":"{}","os_image_hash":"{}"}}"#,
        "c0".repeat(32),
        "ee".repeat(32)
    )
}

/// The certificate extension of an SEV-SNP sim: dstack's `.1.8` in its OCTET STRING.
pub(crate) fn snp_evidence(
    spec: &SnpSimSpec,
    key: &KeyPair,
) -> Result<Vec<CustomExtension>, SimError> {
    let spki = if spec.wrong_key {
        KeyPair::generate()?.subject_public_key_info()
    } else {
        key.subject_public_key_info()
    };
    let rd = ratls_cert_report_data(&spki);
    let mut report = spec.report.clone();
    report.report_data = rd;
    report.host_data = if spec.wrong_host_data {
        [0xbd; 32]
    } else {
        spec.host_data()
    };
    let vek = spec.sim.vcek(spec.product, spec.other_chip)?;
    let signed = report.sign(&vek)?;
    let mut chain = if spec.carry_chain || spec.other_chip {
        vec![spec.sim.ask(spec.product)?, vek.der]
    } else {
        Vec::new()
    };
    if spec.carry_ark {
        chain.push(spec.sim.ark(spec.product)?);
    }
    let config = super::dstack::vm_config();
    let att = match spec.wire {
        DstackWire::V0 => v0(&signed, &chain, &spec.mr_config, &rd, &config),
        DstackWire::V1 => v1(&signed, &chain, &spec.mr_config, &rd, &config),
        DstackWire::Legacy => {
            return Err(SimError::Format(
                "dstack's legacy carrier is TDX only: SEV-SNP takes --dstack-wire v0 or v1".into(),
            ))
        }
    };
    Ok(vec![CustomExtension::from_oid_content(
        OID_DSTACK_ATTESTATION,
        super::der::octets(&att),
    )])
}

/// `VersionedAttestation::V0` of an SEV-SNP report: `AttestationQuote::SevSnp` (index 3),
/// no runtime events.
pub fn v0(
    report: &[u8],
    chain: &[Vec<u8>],
    mr_config: &str,
    rd: &[u8; 64],
    config: &str,
) -> Vec<u8> {
    let mut out = vec![0x00, 0x03];
    scale_bytes(&mut out, report);
    compact(&mut out, chain.len());
    for c in chain {
        scale_bytes(&mut out, c);
    }
    scale_bytes(&mut out, mr_config.as_bytes());
    compact(&mut out, 0);
    out.extend_from_slice(rd);
    scale_bytes(&mut out, config.as_bytes());
    out
}

/// MessagePack heads for the few types `v1` writes (lengths below 2^16).
fn mp_head(out: &mut Vec<u8>, fix: u8, fix_max: usize, wide16: u8, n: usize) {
    match u8::try_from(n) {
        Ok(small) if n <= fix_max => out.push(fix | small),
        _ => {
            out.push(wide16);
            out.extend_from_slice(&u16::try_from(n).unwrap_or(u16::MAX).to_be_bytes());
        }
    }
}

fn mp_str(out: &mut Vec<u8>, s: &str) {
    mp_head(out, 0xa0, 31, 0xda, s.len());
    out.extend_from_slice(s.as_bytes());
}

fn mp_bin(out: &mut Vec<u8>, b: &[u8]) {
    out.push(0xc5);
    out.extend_from_slice(&u16::try_from(b.len()).unwrap_or(u16::MAX).to_be_bytes());
    out.extend_from_slice(b);
}

/// `VersionedAttestation::V1` of an SEV-SNP report, as dstack's `to_vec_named` writes it.
pub fn v1(
    report: &[u8],
    chain: &[Vec<u8>],
    mr_config: &str,
    rd: &[u8; 64],
    config: &str,
) -> Vec<u8> {
    let mut m = Vec::new();
    mp_head(&mut m, 0x80, 15, 0xde, 3);
    mp_str(&mut m, "version");
    m.push(0x01);
    mp_str(&mut m, "platform");
    mp_head(&mut m, 0x80, 15, 0xde, 2);
    mp_str(&mut m, "kind");
    mp_str(&mut m, "sev-snp");
    mp_str(&mut m, "data");
    mp_head(&mut m, 0x80, 15, 0xde, 3);
    mp_str(&mut m, "report");
    mp_bin(&mut m, report);
    mp_str(&mut m, "cert_chain");
    mp_head(&mut m, 0x90, 15, 0xdc, chain.len());
    for c in chain {
        mp_bin(&mut m, c);
    }
    mp_str(&mut m, "mr_config");
    mp_str(&mut m, mr_config);
    mp_str(&mut m, "stack");
    mp_head(&mut m, 0x80, 15, 0xde, 2);
    mp_str(&mut m, "kind");
    mp_str(&mut m, "dstack");
    mp_str(&mut m, "data");
    mp_head(&mut m, 0x80, 15, 0xde, 3);
    mp_str(&mut m, "report_data");
    mp_bin(&mut m, rd);
    mp_str(&mut m, "runtime_events");
    mp_head(&mut m, 0x90, 15, 0xdc, 0);
    mp_str(&mut m, "config");
    mp_str(&mut m, config);
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dstack::{Attestation, Platform};

    #[test]
    fn both_wires_parse_as_dstack_sev_snp_evidence() {
        let report = [7u8; crate::snp::REPORT_LEN];
        let chain = vec![vec![1u8, 2, 3], vec![4u8; 300]];
        let rd = [9u8; 64];
        for att in [
            v0(&report, &chain, "{}", &rd, "cfg"),
            v1(&report, &chain, "{}", &rd, "cfg"),
        ] {
            let a = Attestation::parse(&att).expect("parses");
            let Platform::SevSnp {
                report: r,
                cert_chain,
                mr_config,
            } = &a.platform
            else {
                panic!("not sev-snp: {}", a.platform.name());
            };
            assert_eq!(r.as_ref(), report.as_slice());
            assert_eq!(cert_chain.len(), 2);
            assert_eq!(cert_chain[1].as_ref(), chain[1].as_slice());
            assert_eq!(mr_config.as_ref(), "{}");
            assert_eq!(a.stack.report_data, rd);
        }
    }
}
