//! The simulated SEV-SNP platform (feature `sim`): per product line its own test ARK, ASK
//! and ASVK (RSA-4096, keys in `snp_keys/`), VCEKs and VLEKs minted on demand (P-384, with
//! AMD's extensions, each settable or breakable), the product CRL, and forged reports with
//! every field settable, signed like the firmware signs them. Certificates, signatures and
//! encodings are real; only the AMD Secure Processor is simulated.

use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, RsaKeyPair, ECDSA_P384_SHA384_FIXED_SIGNING};

use super::der::{tlv, uint};
use super::pki::SimError;
use super::snp_x509::{self as x509, CertSpec};
use crate::dcap::time::UnixTime;
use crate::snp::ids::ChipId;
use crate::snp::report::SigningKey;
use crate::snp::{Ark, Product, SnpTrust, Tcb, TcbVersion, REPORT_LEN, SIGNED_LEN};

const KEYS: [(Product, [&[u8]; 3]); 3] = [
    (
        Product::Milan,
        [
            include_bytes!("snp_keys/milan_ark.pk8"),
            include_bytes!("snp_keys/milan_ask.pk8"),
            include_bytes!("snp_keys/milan_asvk.pk8"),
        ],
    ),
    (
        Product::Genoa,
        [
            include_bytes!("snp_keys/genoa_ark.pk8"),
            include_bytes!("snp_keys/genoa_ask.pk8"),
            include_bytes!("snp_keys/genoa_asvk.pk8"),
        ],
    ),
    (
        Product::Turin,
        [
            include_bytes!("snp_keys/turin_ark.pk8"),
            include_bytes!("snp_keys/turin_ask.pk8"),
            include_bytes!("snp_keys/turin_asvk.pk8"),
        ],
    ),
];

/// Serials of the sim's CA certificates (the CRL names them).
pub const ARK_SERIAL: u64 = 0x1_0000;
/// The ASK's serial.
pub const ASK_SERIAL: u64 = 0x1_0001;
/// The ASVK's serial.
pub const ASVK_SERIAL: u64 = 0x1_0101;

const YEAR: i64 = 365 * 86_400;

fn rsa(pkcs8: &[u8]) -> Result<RsaKeyPair, SimError> {
    RsaKeyPair::from_pkcs8(pkcs8).map_err(|e| SimError::Ring(e.to_string()))
}

pub(super) fn pem(der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// One simulated product line: ARK, ASK, ASVK and their keys.
pub struct SimSnpPki {
    product: Product,
    ark_key: RsaKeyPair,
    ask_key: RsaKeyPair,
    asvk_key: RsaKeyPair,
    /// The ARK's DER.
    pub ark: Vec<u8>,
    /// The ASK's DER.
    pub ask: Vec<u8>,
    /// The ASVK's DER.
    pub asvk: Vec<u8>,
    created: UnixTime,
}

impl SimSnpPki {
    /// The sim PKI of `product`, its certificates valid from a day before `now` for 25 years.
    pub fn new(product: Product, now: UnixTime) -> Result<Self, SimError> {
        let [ark_pk8, ask_pk8, asvk_pk8] = KEYS
            .iter()
            .find(|(p, _)| *p == product)
            .map(|(_, k)| *k)
            .ok_or_else(|| SimError::Format(format!("no sim keys for {product}")))?;
        let (ark_key, ask_key, asvk_key) = (rsa(ark_pk8)?, rsa(ask_pk8)?, rsa(asvk_pk8)?);
        let from = UnixTime(now.0.saturating_sub(86_400));
        let until = UnixTime(now.0.saturating_add(25 * YEAR));
        let ark_cn = format!("ARK-{product}");
        let ca = |serial, subject: &str, key: &RsaKeyPair| {
            x509::certificate(
                &CertSpec {
                    serial,
                    issuer: &ark_cn,
                    subject,
                    not_before: from,
                    not_after: until,
                    spki: x509::rsa_spki(key.public().as_ref()),
                    extensions: vec![x509::ca_extension()],
                    algorithm: 0,
                },
                &ark_key,
            )
        };
        let ark = ca(ARK_SERIAL, &ark_cn, &ark_key)?;
        let ask = ca(ASK_SERIAL, &format!("SEV-{product}"), &ask_key)?;
        let asvk = ca(ASVK_SERIAL, &format!("SEV-VLEK-{product}"), &asvk_key)?;
        Ok(Self {
            product,
            ark_key,
            ask_key,
            asvk_key,
            ark,
            ask,
            asvk,
            created: now,
        })
    }

    /// The product line.
    pub fn product(&self) -> Product {
        self.product
    }

    /// The ARK as a pinned root.
    pub fn ark(&self) -> Result<Ark, SimError> {
        Ark::from_der(self.product, self.ark.clone()).map_err(|e| SimError::Format(e.to_string()))
    }

    /// The roots of several sim product lines, as a verifier pins them.
    pub fn trust(pkis: &[&SimSnpPki]) -> Result<SnpTrust, SimError> {
        let arks = pkis.iter().map(|p| p.ark()).collect::<Result<_, _>>()?;
        Ok(SnpTrust::with_arks(arks))
    }

    /// `cert_chain` as KDS serves it: the ASK (or ASVK) then the ARK, PEM.
    pub fn cert_chain_pem(&self, kind: SigningKey) -> String {
        let intermediate = match kind {
            SigningKey::Vcek => &self.ask,
            SigningKey::Vlek => &self.asvk,
        };
        format!("{}{}", pem(intermediate), pem(&self.ark))
    }

    /// The product CRL signed by the ARK, valid `[from, until)`, listing `revoked` serials.
    pub fn crl(
        &self,
        from: UnixTime,
        until: UnixTime,
        revoked: &[u64],
    ) -> Result<Vec<u8>, SimError> {
        x509::crl(
            &format!("ARK-{}", self.product),
            from,
            until,
            revoked,
            &self.ark_key,
        )
    }

    /// A CRL valid for a year from a day before creation, revoking nothing.
    pub fn empty_crl(&self) -> Result<Vec<u8>, SimError> {
        let from = UnixTime(self.created.0.saturating_sub(86_400));
        self.crl(from, UnixTime(from.0.saturating_add(YEAR)), &[])
    }

    /// A VCEK or VLEK as `spec` describes, signed by the ASK or ASVK.
    pub fn vek(&self, spec: &VekSpec) -> Result<SimVek, SimError> {
        let rng = SystemRandom::new();
        let key_pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &rng)
            .map_err(|e| SimError::Ring(e.to_string()))?
            .as_ref()
            .to_vec();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &key_pkcs8, &rng)
            .map_err(|e| SimError::Ring(e.to_string()))?;
        let (issuer, signer, subject) = match spec.kind {
            SigningKey::Vcek => (format!("SEV-{}", self.product), &self.ask_key, "SEV-VCEK"),
            SigningKey::Vlek => (
                format!("SEV-VLEK-{}", self.product),
                &self.asvk_key,
                "SEV-VLEK",
            ),
        };
        let from = UnixTime(self.created.0.saturating_sub(3600));
        let der = x509::certificate(
            &CertSpec {
                serial: 0,
                issuer: spec.issuer.as_deref().unwrap_or(&issuer),
                subject: spec.subject.as_deref().unwrap_or(subject),
                not_before: spec.not_before.unwrap_or(from),
                not_after: spec
                    .not_after
                    .unwrap_or(UnixTime(from.0.saturating_add(7 * YEAR))),
                spki: x509::p384_spki(key.public_key().as_ref()),
                extensions: spec.extensions(self.product),
                algorithm: 1,
            },
            signer,
        )?;
        Ok(SimVek {
            pem: pem(&der),
            der,
            key_pkcs8,
        })
    }
}

/// An AMD VEK extension, by its arcs below `1.3.6.1.4.1.3704.1`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VekExt {
    /// The arcs below AMD's (`[3, 1]` is blSPL).
    pub arcs: Vec<u64>,
    /// The extnValue content.
    pub value: Vec<u8>,
}

/// What a sim VCEK or VLEK says; the defaults are a well-formed key for the given chip/TCB.
#[derive(Clone, Debug)]
pub struct VekSpec {
    /// VCEK or VLEK.
    pub kind: SigningKey,
    /// The chip (VCEK; Turin keys carry its first 8 bytes).
    pub chip_id: ChipId,
    /// The TCB the key is for.
    pub tcb: Tcb,
    /// Overrides the productName (default `<Product>-B0`, `Turin` for Turin).
    pub product_name: Option<String>,
    /// Overrides the issuer CN.
    pub issuer: Option<String>,
    /// Overrides the subject CN.
    pub subject: Option<String>,
    /// Overrides notBefore.
    pub not_before: Option<UnixTime>,
    /// Overrides notAfter.
    pub not_after: Option<UnixTime>,
    /// AMD extensions left out (by arcs, e.g. `[4]` for hwID).
    pub omit: Vec<Vec<u64>>,
    /// Extensions added after the standard ones (duplicates, unknown ones).
    pub extra: Vec<VekExt>,
}

impl VekSpec {
    /// A well-formed VCEK for `chip_id` at `tcb`.
    pub fn vcek(chip_id: ChipId, tcb: Tcb) -> Self {
        Self {
            kind: SigningKey::Vcek,
            chip_id,
            tcb,
            product_name: None,
            issuer: None,
            subject: None,
            not_before: None,
            not_after: None,
            omit: Vec::new(),
            extra: Vec::new(),
        }
    }

    /// A well-formed VLEK at `tcb`.
    pub fn vlek(tcb: Tcb) -> Self {
        Self {
            kind: SigningKey::Vlek,
            ..Self::vcek(ChipId([0; 64]), tcb)
        }
    }

    fn extensions(&self, product: Product) -> Vec<Vec<u8>> {
        let turin = product == Product::Turin;
        let int = |v: u8| uint(u64::from(v));
        let ia5 = |s: &str| tlv(0x16, s.as_bytes());
        let default_name = if turin {
            product.name().to_owned()
        } else {
            format!("{product}-B0")
        };
        let mut exts: Vec<VekExt> = vec![
            VekExt {
                arcs: vec![1],
                value: int(u8::from(turin)),
            },
            VekExt {
                arcs: vec![2],
                value: ia5(self.product_name.as_deref().unwrap_or(&default_name)),
            },
        ];
        if let Some(fmc) = self.tcb.fmc.filter(|_| turin) {
            exts.push(VekExt {
                arcs: vec![3, 9],
                value: int(fmc),
            });
        }
        exts.push(VekExt {
            arcs: vec![3, 1],
            value: int(self.tcb.bootloader),
        });
        exts.push(VekExt {
            arcs: vec![3, 2],
            value: int(self.tcb.tee),
        });
        exts.push(VekExt {
            arcs: vec![3, 3],
            value: int(self.tcb.snp),
        });
        for n in 4..=7 {
            exts.push(VekExt {
                arcs: vec![3, n],
                value: int(0),
            });
        }
        exts.push(VekExt {
            arcs: vec![3, 8],
            value: int(self.tcb.microcode),
        });
        match self.kind {
            SigningKey::Vcek => {
                let len = if turin { 8 } else { 64 };
                let hwid = self.chip_id.0.get(..len).unwrap_or_default().to_vec();
                exts.push(VekExt {
                    arcs: vec![4],
                    value: hwid,
                });
            }
            SigningKey::Vlek => exts.push(VekExt {
                arcs: vec![5],
                value: ia5("sim-csp"),
            }),
        }
        exts.retain(|e| !self.omit.contains(&e.arcs));
        exts.extend(self.extra.iter().cloned());
        exts.iter()
            .map(|e| {
                let arcs: Vec<u64> = [1, 3, 6, 1, 4, 1, 3704, 1]
                    .into_iter()
                    .chain(e.arcs.iter().copied())
                    .collect();
                x509::extension(&arcs, false, &e.value)
            })
            .collect()
    }
}

/// A sim VCEK or VLEK: its certificate and its private key.
pub struct SimVek {
    /// The certificate, DER.
    pub der: Vec<u8>,
    /// The certificate, PEM.
    pub pem: String,
    /// The P-384 private key, PKCS#8.
    pub key_pkcs8: Vec<u8>,
}

impl SimVek {
    /// Signs `report` (its first 0x2A0 bytes) as the firmware does: ECDSA P-384/SHA-384, r and
    /// s little-endian in 72-byte fields at 0x2A0 and 0x2E8.
    pub fn sign(&self, report: &mut [u8; REPORT_LEN]) -> Result<(), SimError> {
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &self.key_pkcs8, &rng)
            .map_err(|e| SimError::Ring(e.to_string()))?;
        let (signed, signature) = report.split_at_mut(SIGNED_LEN);
        let sig = key
            .sign(&rng, signed)
            .map_err(|e| SimError::Ring(e.to_string()))?;
        let (r, s) = sig.as_ref().split_at(48);
        signature.fill(0);
        let (r_out, rest) = signature.split_at_mut(72);
        r_out
            .iter_mut()
            .zip(r.iter().rev())
            .for_each(|(o, i)| *o = *i);
        rest.iter_mut()
            .zip(s.iter().rev())
            .for_each(|(o, i)| *o = *i);
        Ok(())
    }
}

/// Every field of a report, raw, so a test can set any of them (reserved ones included).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportSpec {
    /// VERSION.
    pub version: u32,
    /// GUEST_SVN.
    pub guest_svn: u32,
    /// POLICY.
    pub policy: u64,
    /// FAMILY_ID.
    pub family_id: [u8; 16],
    /// IMAGE_ID.
    pub image_id: [u8; 16],
    /// VMPL.
    pub vmpl: u32,
    /// SIGNATURE_ALGO.
    pub signature_algo: u32,
    /// CURRENT_TCB.
    pub current_tcb: TcbVersion,
    /// PLATFORM_INFO.
    pub platform_info: u64,
    /// KEY_INFO (AUTHOR_KEY_EN bit 0, MASK_CHIP_KEY bit 1, SIGNING_KEY bits 2–4).
    pub key_info: u32,
    /// REPORT_DATA.
    pub report_data: [u8; 64],
    /// MEASUREMENT.
    pub measurement: [u8; 48],
    /// HOST_DATA.
    pub host_data: [u8; 32],
    /// ID_KEY_DIGEST.
    pub id_key_digest: [u8; 48],
    /// AUTHOR_KEY_DIGEST.
    pub author_key_digest: [u8; 48],
    /// REPORT_ID.
    pub report_id: [u8; 32],
    /// REPORT_ID_MA.
    pub report_id_ma: [u8; 32],
    /// REPORTED_TCB.
    pub reported_tcb: TcbVersion,
    /// CPUID_FAM_ID, CPUID_MOD_ID, CPUID_STEP.
    pub cpuid: [u8; 3],
    /// CHIP_ID.
    pub chip_id: [u8; 64],
    /// COMMITTED_TCB.
    pub committed_tcb: TcbVersion,
    /// CURRENT_BUILD, _MINOR, _MAJOR.
    pub current_version: [u8; 3],
    /// COMMITTED_BUILD, _MINOR, _MAJOR.
    pub committed_version: [u8; 3],
    /// LAUNCH_TCB.
    pub launch_tcb: TcbVersion,
    /// LAUNCH_MIT_VECTOR.
    pub launch_mit_vector: u64,
    /// CURRENT_MIT_VECTOR.
    pub current_mit_vector: u64,
}

/// The sim chip's CHIP_ID (Turin: the first 8 bytes, the rest zero).
pub fn sim_chip_id(product: Product) -> ChipId {
    let mut id = [0u8; 64];
    let len = if product == Product::Turin { 8 } else { 64 };
    for (i, b) in id.iter_mut().take(len).enumerate() {
        *b = u8::try_from(i)
            .unwrap_or(0)
            .wrapping_mul(7)
            .wrapping_add(0x51);
    }
    ChipId(id)
}

/// The sim platform's TCB (FMC only on Turin).
pub fn sim_tcb(product: Product) -> Tcb {
    Tcb {
        fmc: (product == Product::Turin).then_some(1),
        bootloader: 4,
        tee: 1,
        snp: 23,
        microcode: 213,
    }
}

impl ReportSpec {
    /// A version 3 report (5 on Turin) of a non-debug guest on the sim chip of `product`.
    pub fn new(product: Product) -> Self {
        let tcb = TcbVersion::encode(&sim_tcb(product), product.tcb_layout());
        let cpuid = match product {
            Product::Milan => [0x19, 0x01, 0x01],
            Product::Genoa => [0x19, 0x11, 0x01],
            Product::Turin => [0x1a, 0x02, 0x01],
        };
        Self {
            version: if product == Product::Turin { 5 } else { 3 },
            guest_svn: 1,
            policy: 0x3_0000,
            family_id: [0; 16],
            image_id: [0; 16],
            vmpl: 0,
            signature_algo: 1,
            current_tcb: tcb,
            platform_info: 0x25,
            key_info: 0,
            report_data: [0; 64],
            measurement: [0x5e; 48],
            host_data: [0; 32],
            id_key_digest: [0; 48],
            author_key_digest: [0; 48],
            report_id: [0x11; 32],
            report_id_ma: [0xff; 32],
            reported_tcb: tcb,
            cpuid,
            chip_id: sim_chip_id(product).0,
            committed_tcb: tcb,
            current_version: [29, 55, 1],
            committed_version: [29, 55, 1],
            launch_tcb: tcb,
            launch_mit_vector: 0,
            current_mit_vector: 0,
        }
    }

    /// The unsigned report bytes, laid out as the firmware lays them out.
    pub fn bytes(&self) -> [u8; REPORT_LEN] {
        let mut out = Vec::with_capacity(REPORT_LEN);
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&self.guest_svn.to_le_bytes());
        out.extend_from_slice(&self.policy.to_le_bytes());
        out.extend_from_slice(&self.family_id);
        out.extend_from_slice(&self.image_id);
        out.extend_from_slice(&self.vmpl.to_le_bytes());
        out.extend_from_slice(&self.signature_algo.to_le_bytes());
        out.extend_from_slice(&self.current_tcb.0);
        out.extend_from_slice(&self.platform_info.to_le_bytes());
        out.extend_from_slice(&self.key_info.to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&self.report_data);
        out.extend_from_slice(&self.measurement);
        out.extend_from_slice(&self.host_data);
        out.extend_from_slice(&self.id_key_digest);
        out.extend_from_slice(&self.author_key_digest);
        out.extend_from_slice(&self.report_id);
        out.extend_from_slice(&self.report_id_ma);
        out.extend_from_slice(&self.reported_tcb.0);
        if self.version >= 3 {
            out.extend_from_slice(&self.cpuid);
        } else {
            out.extend_from_slice(&[0; 3]);
        }
        out.extend_from_slice(&[0; 21]);
        out.extend_from_slice(&self.chip_id);
        out.extend_from_slice(&self.committed_tcb.0);
        out.extend_from_slice(&self.current_version);
        out.push(0);
        out.extend_from_slice(&self.committed_version);
        out.push(0);
        out.extend_from_slice(&self.launch_tcb.0);
        if self.version >= 5 {
            out.extend_from_slice(&self.launch_mit_vector.to_le_bytes());
            out.extend_from_slice(&self.current_mit_vector.to_le_bytes());
        }
        out.resize(REPORT_LEN, 0);
        let mut report = [0u8; REPORT_LEN];
        report.copy_from_slice(&out);
        report
    }

    /// The report signed by `vek`.
    pub fn sign(&self, vek: &SimVek) -> Result<[u8; REPORT_LEN], SimError> {
        let mut report = self.bytes();
        vek.sign(&mut report)?;
        Ok(report)
    }
}
