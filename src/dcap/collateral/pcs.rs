//! PURE. Reading Intel PCS / PCCS v4 responses into a [`Collateral`] while keeping the
//! exact signed bytes: the `tcbInfo` and `enclaveIdentity` values are taken verbatim with a
//! raw-value JSON parser, never re-serialised. Issuer chains come URL-encoded in headers.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{Collateral, CollateralError};

/// Which PCK CA issued a platform's PCK certificate (selects the PCK CRL).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PckCa {
    /// `Intel SGX PCK Processor CA`.
    Processor,
    /// `Intel SGX PCK Platform CA`.
    Platform,
}

impl PckCa {
    /// The `ca=` query value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Processor => "processor",
            Self::Platform => "platform",
        }
    }

    /// From a PCK certificate issuer common name.
    pub fn from_issuer_cn(cn: &str) -> Option<Self> {
        if cn.contains("Processor") {
            Some(Self::Processor)
        } else if cn.contains("Platform") {
            Some(Self::Platform)
        } else {
            None
        }
    }
}

/// The response headers that carry issuer chains (API v4 names, and v3's for TCB info).
pub const TCB_INFO_ISSUER_CHAIN: [&str; 2] = ["TCB-Info-Issuer-Chain", "SGX-TCB-Info-Issuer-Chain"];
/// QE identity issuer chain header.
pub const QE_IDENTITY_ISSUER_CHAIN: [&str; 1] = ["SGX-Enclave-Identity-Issuer-Chain"];
/// PCK CRL issuer chain header.
pub const PCK_CRL_ISSUER_CHAIN: [&str; 1] = ["SGX-PCK-CRL-Issuer-Chain"];
/// TCB evaluation data numbers issuer chain header.
pub const EVALUATION_NUMBERS_ISSUER_CHAIN: [&str; 1] = ["TCB-Evaluation-Data-Numbers-Issuer-Chain"];

fn bad(what: &'static str, detail: impl Into<String>) -> CollateralError {
    CollateralError::Content {
        what,
        detail: detail.into(),
    }
}

/// A signed JSON body `{"<key>": <value>, "signature": "<hex>"}`: the value's exact text and the signature.
fn signed_body(
    body: &[u8],
    key: &str,
    what: &'static str,
) -> Result<(String, Vec<u8>), CollateralError> {
    #[derive(Deserialize)]
    struct Body<'a> {
        #[serde(borrow, rename = "tcbInfo")]
        tcb_info: Option<&'a RawValue>,
        #[serde(borrow, rename = "enclaveIdentity")]
        enclave_identity: Option<&'a RawValue>,
        #[serde(borrow, rename = "tcbEvaluationDataNumbers")]
        evaluation_numbers: Option<&'a RawValue>,
        signature: String,
    }
    let text = std::str::from_utf8(body).map_err(|_| bad(what, "response is not UTF-8"))?;
    let b: Body<'_> = serde_json::from_str(text)
        .map_err(|e| bad(what, format!("response is not the PCS JSON shape: {e}")))?;
    let value = match key {
        "tcbInfo" => b.tcb_info,
        "enclaveIdentity" => b.enclave_identity,
        _ => b.evaluation_numbers,
    }
    .ok_or_else(|| bad(what, format!("response has no `{key}`")))?;
    let signature = hex::decode(&b.signature).map_err(|_| bad(what, "signature is not hex"))?;
    Ok((value.get().to_owned(), signature))
}

/// The TCB info response body: exact `tcbInfo` text and its signature.
pub fn tcb_info_body(body: &[u8]) -> Result<(String, Vec<u8>), CollateralError> {
    signed_body(body, "tcbInfo", "TCB info response")
}

/// The QE identity response body: exact `enclaveIdentity` text and its signature.
pub fn qe_identity_body(body: &[u8]) -> Result<(String, Vec<u8>), CollateralError> {
    signed_body(body, "enclaveIdentity", "QE identity response")
}

/// The TCB evaluation data numbers response body: exact `tcbEvaluationDataNumbers` text and
/// its signature.
pub fn evaluation_numbers_body(body: &[u8]) -> Result<(String, Vec<u8>), CollateralError> {
    signed_body(
        body,
        "tcbEvaluationDataNumbers",
        "TCB evaluation data numbers response",
    )
}

/// A URL-encoded PEM issuer chain header value.
pub fn issuer_chain(value: &[u8], what: &'static str) -> Result<String, CollateralError> {
    let decoded = percent_encoding::percent_decode(value)
        .decode_utf8()
        .map_err(|_| bad(what, "issuer chain header is not UTF-8"))?;
    if !decoded.contains("-----BEGIN CERTIFICATE-----") {
        return Err(bad(what, "issuer chain header holds no PEM certificate"));
    }
    Ok(decoded.into_owned())
}

/// A CRL body as DER, PEM (`X509 CRL`) or hex text (PCCS serves the root CRL as hex).
pub fn crl_body(body: &[u8], what: &'static str) -> Result<Vec<u8>, CollateralError> {
    use base64::Engine as _;
    if body.first() == Some(&0x30) {
        return Ok(body.to_vec());
    }
    let text = std::str::from_utf8(body)
        .map_err(|_| bad(what, "CRL is neither DER nor text"))?
        .trim();
    if let Some(rest) = text.strip_prefix("-----BEGIN X509 CRL-----") {
        let b64: String = rest
            .trim_end()
            .strip_suffix("-----END X509 CRL-----")
            .ok_or_else(|| bad(what, "PEM CRL without END line"))?
            .split_whitespace()
            .collect();
        return base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| bad(what, "PEM CRL is not base64"));
    }
    hex::decode(text).map_err(|_| bad(what, "CRL is neither DER, PEM nor hex"))
}

/// The four PCS answers, assembled into one collateral snapshot.
pub struct Responses {
    /// Root CA CRL body.
    pub root_ca_crl: Vec<u8>,
    /// PCK CRL body and its issuer-chain header value.
    pub pck_crl: (Vec<u8>, Vec<u8>),
    /// TCB info body and its issuer-chain header value.
    pub tcb_info: (Vec<u8>, Vec<u8>),
    /// QE identity body and its issuer-chain header value.
    pub qe_identity: (Vec<u8>, Vec<u8>),
}

impl Responses {
    /// Builds the collateral; signatures are checked later over the exact bytes kept here.
    pub fn into_collateral(self) -> Result<Collateral, CollateralError> {
        let (tcb_info, tcb_info_signature) = tcb_info_body(&self.tcb_info.0)?;
        let (qe_identity, qe_identity_signature) = qe_identity_body(&self.qe_identity.0)?;
        Ok(Collateral {
            pck_crl_issuer_chain: issuer_chain(&self.pck_crl.1, "PCK CRL issuer chain")?,
            root_ca_crl: crl_body(&self.root_ca_crl, "root CA CRL")?,
            pck_crl: crl_body(&self.pck_crl.0, "PCK CRL")?,
            tcb_info_issuer_chain: issuer_chain(&self.tcb_info.1, "TCB info issuer chain")?,
            tcb_info,
            tcb_info_signature,
            qe_identity_issuer_chain: issuer_chain(
                &self.qe_identity.1,
                "QE identity issuer chain",
            )?,
            qe_identity,
            qe_identity_signature,
        })
    }
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_signed_value_byte_for_byte() {
        let body = br#"{"tcbInfo":{"b":1,  "a":[2,3]},"signature":"0a0b"}"#;
        let (text, sig) = tcb_info_body(body).expect("parses");
        assert_eq!(text, r#"{"b":1,  "a":[2,3]}"#);
        assert_eq!(sig, vec![0x0a, 0x0b]);
        assert!(qe_identity_body(body).is_err());
        assert!(evaluation_numbers_body(body).is_err());
        assert!(tcb_info_body(b"<html>busy</html>").is_err());
        let numbers = br#"{"tcbEvaluationDataNumbers":{"id":"TDX", "version":1},"signature":"0c"}"#;
        let (text, sig) = evaluation_numbers_body(numbers).expect("parses");
        assert_eq!(text, r#"{"id":"TDX", "version":1}"#);
        assert_eq!(sig, vec![0x0c]);
    }

    #[test]
    fn decodes_chains_and_every_crl_encoding() {
        let chain = issuer_chain(
            b"-----BEGIN%20CERTIFICATE-----%0AAAEC%0A-----END%20CERTIFICATE-----%0A",
            "t",
        )
        .expect("ok");
        assert!(chain.starts_with("-----BEGIN CERTIFICATE-----\nAAEC"));
        assert!(issuer_chain(b"garbage", "t").is_err());
        assert_eq!(crl_body(&[0x30, 0x00], "t").ok(), Some(vec![0x30, 0x00]));
        assert_eq!(crl_body(b"3000\n", "t").ok(), Some(vec![0x30, 0x00]));
        assert_eq!(
            crl_body(
                b"-----BEGIN X509 CRL-----\nMAA=\n-----END X509 CRL-----\n",
                "t"
            )
            .ok(),
            Some(vec![0x30, 0x00])
        );
        assert!(crl_body(b"nonsense", "t").is_err());
    }
}
