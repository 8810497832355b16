//! The pinned roots: AMD's ARK for Milan, Genoa and Turin compiled in (as the Intel root
//! is in `dcap::trust`), each pinned by the SHA-256 of its DER; or, for the sim, test ARKs.
//! Evidence never supplies its own root: a copy in a cert_chain is only compared with these.

use super::cert;
use super::error::{CertRole, SnpError};
use super::product::Product;
use crate::dcap::pinned::PinnedRoot;
use crate::dcap::time::UnixTime;

/// AMD's ARK-Milan, DER, as KDS serves it in `/vcek/v1/Milan/cert_chain`.
pub const ARK_MILAN_DER: &[u8] = include_bytes!("trust/ark_milan.der");
/// AMD's ARK-Genoa, DER.
pub const ARK_GENOA_DER: &[u8] = include_bytes!("trust/ark_genoa.der");
/// AMD's ARK-Turin, DER.
pub const ARK_TURIN_DER: &[u8] = include_bytes!("trust/ark_turin.der");

/// SHA-256 of each pinned ARK's DER; the same values are published by virtee/sev (builtin
/// certificates), google/go-sev-guest (verify/trust) and microsoft/TEE-Attestation-Verification.
pub const ARK_SHA256: [(Product, &str); 3] = [
    (
        Product::Milan,
        "69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd",
    ),
    (
        Product::Genoa,
        "4c6598d19c18719c5dfd4a7d335f674e5bfe1d8f800cea2cf270c10d103db2f1",
    ),
    (
        Product::Turin,
        "1f084161a44bb6d93778a904877d4819cafa5d05ef4193b2ded9dd9c73dd3f6a",
    ),
];

/// One product's root: its DER and what verification needs from it, pre-extracted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ark {
    product: Product,
    root: PinnedRoot,
    key: Vec<u8>,
}

impl Ark {
    /// A root from its DER: a self-signed RSA-PSS certificate named `ARK-<product>`.
    pub fn from_der(product: Product, der: Vec<u8>) -> Result<Self, SnpError> {
        let (subject, key, validity) = {
            let c = cert::parse_cert(&der, CertRole::Ark)?;
            if c.subject().as_raw() != c.issuer().as_raw() {
                return Err(SnpError::cert(CertRole::Ark, "not self-issued"));
            }
            let expected_cn = format!("ARK-{}", product.name());
            if cert::common_name(&c) != expected_cn {
                return Err(SnpError::cert(
                    CertRole::Ark,
                    format!("subject `{}` is not {expected_cn}", c.subject()),
                ));
            }
            let key = cert::rsa_key(&c, CertRole::Ark)?;
            cert::verify_cert_signature(&c, key, CertRole::Ark)?;
            (
                c.subject().as_raw().to_vec(),
                key.to_vec(),
                cert::validity(&c),
            )
        };
        Ok(Self {
            product,
            root: PinnedRoot::new(der, subject, validity),
            key,
        })
    }

    /// The product.
    pub fn product(&self) -> Product {
        self.product
    }

    /// The DER.
    pub fn der(&self) -> &[u8] {
        self.root.der()
    }

    /// The subject name, DER.
    pub(crate) fn subject(&self) -> &[u8] {
        self.root.subject()
    }

    /// The RSA public key (PKCS#1).
    pub(crate) fn key(&self) -> &[u8] {
        &self.key
    }

    /// The validity window, inclusive.
    pub fn validity(&self) -> (UnixTime, UnixTime) {
        self.root.validity()
    }

    /// SHA-256 of the DER, lower-case hex.
    pub fn sha256_hex(&self) -> String {
        self.root.sha256().to_string()
    }
}

/// The set of pinned roots, at most one per product.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnpTrust {
    arks: Vec<Ark>,
}

impl SnpTrust {
    /// AMD's roots for Milan, Genoa and Turin.
    pub fn amd() -> Self {
        let pinned = [
            (Product::Milan, ARK_MILAN_DER),
            (Product::Genoa, ARK_GENOA_DER),
            (Product::Turin, ARK_TURIN_DER),
        ];
        // The compiled-in ARKs parse and verify: `amd_arks_match_their_pins` proves it; a
        // root that did not would be left out (fail closed), never trusted.
        let arks = pinned
            .into_iter()
            .filter_map(|(p, der)| Ark::from_der(p, der.to_vec()).ok())
            .collect();
        Self { arks }
    }

    /// Custom roots (the sim's test PKI); a product given twice keeps its first root.
    pub fn with_arks(arks: Vec<Ark>) -> Self {
        let mut out: Vec<Ark> = Vec::with_capacity(arks.len());
        for ark in arks {
            if !out.iter().any(|a| a.product == ark.product) {
                out.push(ark);
            }
        }
        Self { arks: out }
    }

    /// The root for `product`.
    pub fn ark(&self, product: Product) -> Option<&Ark> {
        self.arks.iter().find(|a| a.product == product)
    }

    /// Every root held.
    pub fn arks(&self) -> &[Ark] {
        &self.arks
    }

    /// True when these are AMD's compiled-in roots.
    pub fn is_amd(&self) -> bool {
        self.arks.len() == 3
            && self.arks.iter().all(|a| {
                ARK_SHA256
                    .iter()
                    .any(|(p, h)| *p == a.product && a.sha256_hex() == *h)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amd_arks_match_their_pins_and_verify_their_self_signatures() {
        let trust = SnpTrust::amd();
        assert_eq!(
            trust.arks().len(),
            3,
            "every compiled-in ARK parses and self-verifies"
        );
        for (product, sha) in ARK_SHA256 {
            let ark = trust.ark(product).map(Ark::sha256_hex);
            assert_eq!(ark.as_deref(), Some(sha), "{product}");
        }
        assert!(trust.is_amd());
    }

    #[test]
    fn an_ark_under_another_products_name_is_refused() {
        assert!(Ark::from_der(Product::Genoa, ARK_MILAN_DER.to_vec()).is_err());
        assert!(Ark::from_der(Product::Milan, ARK_MILAN_DER.to_vec()).is_ok());
    }

    #[test]
    fn a_tampered_ark_is_refused() {
        let mut der = ARK_TURIN_DER.to_vec();
        // A byte of the modulus, inside the signed part.
        if let Some(b) = der.get_mut(400) {
            *b ^= 1;
        }
        assert!(Ark::from_der(Product::Turin, der).is_err());
    }
}
