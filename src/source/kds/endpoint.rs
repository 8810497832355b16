//! EDGE. KDS's URLs and the fetches of one chain with its CRL and of one VCEK, each verified
//! before it is returned (the chain to the pinned ARK, the VCEK under the chain and bound to
//! the chip and TCB asked for).

use std::sync::Arc;
use std::time::Duration;

use super::{KdsError, VcekKey, AMD_KDS, MAX_KDS_BODY};
use crate::snp::chain::VerifiedChain;
use crate::snp::ids::ChipId;
use crate::snp::report::SigningKey;
use crate::snp::verify::{check_binding, VerifiedVek};
use crate::snp::{Product, SnpError, SnpTrust, Tcb};
use crate::source::pcs::{base_url, http_get, tls_config, FetchError};

/// Where and how to fetch.
#[derive(Clone)]
pub struct KdsEndpoint {
    base: String,
    tls: Arc<rustls::ClientConfig>,
    timeout: Duration,
}

impl std::fmt::Debug for KdsEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KdsEndpoint")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl KdsEndpoint {
    /// AMD's KDS (WebPKI roots for its TLS).
    pub fn amd() -> Result<Self, FetchError> {
        Self::at(AMD_KDS, None)
    }

    /// A KDS (or a cache serving its paths) at `base_url`; `custom_ca_pem` replaces the
    /// WebPKI roots for its TLS.
    pub fn at(url: &str, custom_ca_pem: Option<&[u8]>) -> Result<Self, FetchError> {
        Ok(Self {
            base: base_url(url)?,
            tls: tls_config(custom_ca_pem)?,
            timeout: Duration::from_secs(10),
        })
    }

    /// Sets the per-request timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    fn kind_path(kind: SigningKey) -> &'static str {
        match kind {
            SigningKey::Vcek => "vcek",
            SigningKey::Vlek => "vlek",
        }
    }

    /// `/{vcek|vlek}/v1/{product}/cert_chain`: the ASK or ASVK, then the ARK (PEM).
    pub fn cert_chain_url(&self, product: Product, kind: SigningKey) -> String {
        let k = Self::kind_path(kind);
        format!("{}/{k}/v1/{product}/cert_chain", self.base)
    }

    /// `/{vcek|vlek}/v1/{product}/crl`: the product's CRL, signed by the ARK (DER).
    pub fn crl_url(&self, product: Product, kind: SigningKey) -> String {
        let k = Self::kind_path(kind);
        format!("{}/{k}/v1/{product}/crl", self.base)
    }

    /// `/vcek/v1/{product}/{hwid}?…SPL=…`: the chip's VCEK for one TCB (DER). Milan and Genoa
    /// take the 64-byte CHIP_ID and four SPLs; Turin the first 8 bytes and the FMC SPL too.
    pub fn vcek_url(&self, product: Product, chip: &ChipId, tcb: &Tcb) -> String {
        let (hwid, fmc) = match (product, tcb.fmc) {
            (Product::Turin, fmc) => (
                hex::encode(chip.0.get(..8).unwrap_or_default()),
                format!("fmcSPL={:02}&", fmc.unwrap_or(0)),
            ),
            _ => (hex::encode(chip.0), String::new()),
        };
        format!(
            "{}/vcek/v1/{product}/{hwid}?{fmc}blSPL={:02}&teeSPL={:02}&snpSPL={:02}&ucodeSPL={:02}",
            self.base, tcb.bootloader, tcb.tee, tcb.snp, tcb.microcode
        )
    }

    async fn get(&self, url: &str) -> Result<bytes::Bytes, FetchError> {
        http_get(url, &self.tls, None, (self.timeout, MAX_KDS_BODY))
            .await
            .map(|(_, body)| body)
    }

    /// Fetches and verifies the product's chain with its CRL.
    pub async fn fetch_chain(
        &self,
        product: Product,
        kind: SigningKey,
        trust: &SnpTrust,
    ) -> Result<VerifiedChain, KdsError> {
        let (chain_url, crl_url) = (
            self.cert_chain_url(product, kind),
            self.crl_url(product, kind),
        );
        let (chain, crl) = tokio::join!(self.get(&chain_url), self.get(&crl_url));
        let (chain, crl) = (chain?, crl?);
        verify_chain(product, kind, &chain, &crl, trust)
    }

    /// Fetches the VCEK for `key` (DER, or PEM as some caches serve it) and verifies it under
    /// `chain` and bound to the chip and TCB asked for.
    pub async fn fetch_vcek(
        &self,
        key: &VcekKey,
        chain: Arc<VerifiedChain>,
    ) -> Result<(Vec<u8>, VerifiedVek), KdsError> {
        let (product, chip, tcb) = key;
        let body = self
            .get(&self.vcek_url(*product, &ChipId(*chip), tcb))
            .await?;
        let der = if body.starts_with(b"-----BEGIN") {
            let mut certs = crate::dcap::pki::pem_chain(&body, "VCEK PEM")
                .map_err(|e| {
                    KdsError::Invalid(SnpError::cert(crate::snp::CertRole::Vcek, e.to_string()))
                })?
                .into_iter();
            certs.next().unwrap_or_default()
        } else {
            body.to_vec()
        };
        let vek = verify_vcek(&der, chain, key)?;
        Ok((der, vek))
    }
}

/// Verifies a served `cert_chain` (PEM: the intermediate, then optionally the ARK, which
/// must be the pinned one byte for byte) and CRL (DER) for `product`.
pub(crate) fn verify_chain(
    product: Product,
    kind: SigningKey,
    chain_pem: &[u8],
    crl_der: &[u8],
    trust: &SnpTrust,
) -> Result<VerifiedChain, KdsError> {
    let invalid =
        |detail: String| KdsError::Invalid(SnpError::cert(crate::snp::CertRole::Ask, detail));
    let mut certs = crate::dcap::pki::pem_chain(chain_pem, "SEV-SNP cert_chain")
        .map_err(|e| invalid(e.to_string()))?
        .into_iter();
    let (Some(intermediate), ark, None) = (certs.next(), certs.next(), certs.next()) else {
        return Err(invalid(
            "cert_chain holds the ASK or ASVK and optionally the ARK, nothing else".into(),
        ));
    };
    if let Some(ark) = ark {
        if trust.ark(product).map(|a| a.der()) != Some(ark.as_slice()) {
            return Err(KdsError::Invalid(SnpError::NotPinned {
                role: crate::snp::CertRole::Ark,
                product,
                detail: "the chain's ARK is not the pinned one".into(),
            }));
        }
    }
    VerifiedChain::verify(product, kind, &intermediate, Some(crl_der), trust)
        .map_err(KdsError::Invalid)
}

/// Verifies a VCEK under `chain` and checks it is the one for `key`'s chip and TCB.
pub(crate) fn verify_vcek(
    der: &[u8],
    chain: Arc<VerifiedChain>,
    (_, chip, tcb): &VcekKey,
) -> Result<VerifiedVek, KdsError> {
    let vek = VerifiedVek::verify(der, chain).map_err(KdsError::Invalid)?;
    check_binding(&vek, &ChipId(*chip), tcb).map_err(KdsError::Invalid)?;
    Ok(vek)
}
