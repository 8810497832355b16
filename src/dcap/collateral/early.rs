//! Intel's early TCB data as bytes: the early TCB info and QE identity (PCS v4
//! `update=early`) with their signatures and issuer chains, and the signed list of
//! evaluation data numbers that dates them. The CRLs are the standard snapshot's: there is no
//! early CRL. Offline, an early bundle is a collateral bundle marked `"update": "early"`.

use super::{hex_field, parse_bundle, Collateral, CollateralError};

/// A signed `tcbEvaluationDataNumbers` document, exactly as served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedNumbers {
    /// PEM: TCB Signing certificate, then the root.
    pub issuer_chain: String,
    /// The exact signed text of the `tcbEvaluationDataNumbers` JSON value.
    pub text: String,
    /// Raw `r‖s` signature over `text`.
    pub signature: Vec<u8>,
}

/// The early TCB info and QE identity of one platform and TEE, as signed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EarlyCollateral {
    /// PEM: TCB Signing certificate, then the root.
    pub tcb_info_issuer_chain: String,
    /// The exact signed text of the early `tcbInfo` value.
    pub tcb_info: String,
    /// Raw `r‖s` signature over `tcb_info`.
    pub tcb_info_signature: Vec<u8>,
    /// PEM: TCB Signing certificate, then the root.
    pub qe_identity_issuer_chain: String,
    /// The exact signed text of the early `enclaveIdentity` value.
    pub qe_identity: String,
    /// Raw `r‖s` signature over `qe_identity`.
    pub qe_identity_signature: Vec<u8>,
    /// The evaluation data numbers with their dates, when the source serves them.
    pub evaluation_numbers: Option<SignedNumbers>,
}

impl EarlyCollateral {
    /// The early half of `c` (its TCB info and QE identity), dated by `numbers`.
    pub fn of(c: &Collateral, numbers: Option<SignedNumbers>) -> Self {
        Self {
            tcb_info_issuer_chain: c.tcb_info_issuer_chain.clone(),
            tcb_info: c.tcb_info.clone(),
            tcb_info_signature: c.tcb_info_signature.clone(),
            qe_identity_issuer_chain: c.qe_identity_issuer_chain.clone(),
            qe_identity: c.qe_identity.clone(),
            qe_identity_signature: c.qe_identity_signature.clone(),
            evaluation_numbers: numbers,
        }
    }
}

/// Which evaluation data a bundle file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Update {
    /// Intel's standard data (`update=standard`, the default): what verdicts are made under.
    Standard,
    /// Intel's early data (`update=early`): what the next TCB recovery will enforce.
    Early,
}

/// One collateral bundle file: the collateral, which data it is, and the evaluation data
/// numbers list when the file carries one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BundleFile {
    /// The collateral.
    pub collateral: Collateral,
    /// Standard or early data.
    pub update: Update,
    /// The signed evaluation data numbers list.
    pub evaluation_numbers: Option<SignedNumbers>,
}

impl BundleFile {
    /// Parses the bundle format of `Collateral::from_json` with its optional `update`
    /// (`"standard"` or `"early"`) and `tcb_evaluation_data_numbers` (+ `_signature`, hex, and
    /// `_issuer_chain`, PEM) fields.
    pub fn from_json(bytes: &[u8]) -> Result<Self, CollateralError> {
        let mut b = parse_bundle(bytes)?;
        let update = match b.update.take().as_deref() {
            None | Some("standard") => Update::Standard,
            Some("early") => Update::Early,
            Some(other) => {
                return Err(CollateralError::Json(format!(
                    "update = `{other}`: expected \"standard\" or \"early\""
                )))
            }
        };
        let numbers = (
            b.tcb_evaluation_data_numbers.take(),
            b.tcb_evaluation_data_numbers_signature.take(),
            b.tcb_evaluation_data_numbers_issuer_chain.take(),
        );
        let evaluation_numbers = match numbers {
            (None, None, None) => None,
            (Some(text), Some(signature), Some(issuer_chain)) => Some(SignedNumbers {
                issuer_chain,
                signature: hex_field("tcb_evaluation_data_numbers_signature", &signature)?,
                text,
            }),
            _ => {
                return Err(CollateralError::Json(
                    "tcb_evaluation_data_numbers needs its _signature and _issuer_chain".into(),
                ))
            }
        };
        Ok(Self {
            collateral: Collateral::from_bundle(b)?,
            update,
            evaluation_numbers,
        })
    }

    /// Serialises to the bundle format, with `update` and the numbers when present.
    pub fn to_json(&self) -> String {
        let mut v: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&self.collateral.to_json()).unwrap_or_default();
        if self.update == Update::Early {
            v.insert("update".into(), "early".into());
        }
        if let Some(n) = &self.evaluation_numbers {
            v.insert("tcb_evaluation_data_numbers".into(), n.text.clone().into());
            v.insert(
                "tcb_evaluation_data_numbers_signature".into(),
                hex::encode(&n.signature).into(),
            );
            v.insert(
                "tcb_evaluation_data_numbers_issuer_chain".into(),
                n.issuer_chain.clone().into(),
            );
        }
        serde_json::Value::Object(v).to_string()
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)] // serde_json's IndexMut on literals built here
mod tests {
    use super::*;

    fn bundle() -> serde_json::Value {
        serde_json::json!({
            "pck_crl_issuer_chain": "a", "root_ca_crl": "30", "pck_crl": "30",
            "tcb_info_issuer_chain": "b", "tcb_info": "{}", "tcb_info_signature": "00",
            "qe_identity_issuer_chain": "c", "qe_identity": "{}", "qe_identity_signature": "00",
        })
    }

    #[test]
    fn an_early_bundle_round_trips_and_a_plain_one_is_standard() {
        let plain = BundleFile::from_json(bundle().to_string().as_bytes()).ok();
        assert_eq!(plain.as_ref().map(|b| b.update), Some(Update::Standard));
        let mut early = bundle();
        early["update"] = "early".into();
        early["tcb_evaluation_data_numbers"] = "{\"id\":\"SGX\"}".into();
        early["tcb_evaluation_data_numbers_signature"] = "0a0b".into();
        early["tcb_evaluation_data_numbers_issuer_chain"] = "d".into();
        let read = BundleFile::from_json(early.to_string().as_bytes()).ok();
        assert_eq!(read.as_ref().map(|b| b.update), Some(Update::Early));
        assert_eq!(
            read.as_ref()
                .and_then(|b| b.evaluation_numbers.as_ref())
                .map(|n| n.signature.clone()),
            Some(vec![0x0a, 0x0b])
        );
        let again = read.map(|b| BundleFile::from_json(b.to_json().as_bytes()).ok());
        assert_eq!(
            again.flatten().map(|b| b.update),
            Some(Update::Early),
            "round trip"
        );
        // The standard reader takes an early bundle's collateral and leaves the rest aside.
        assert!(Collateral::from_json(early.to_string().as_bytes()).is_ok());
    }

    #[test]
    fn refuses_an_unknown_update_and_a_list_without_its_signature() {
        let mut b = bundle();
        b["update"] = "later".into();
        assert!(BundleFile::from_json(b.to_string().as_bytes()).is_err());
        let mut b = bundle();
        b["tcb_evaluation_data_numbers"] = "{}".into();
        assert!(BundleFile::from_json(b.to_string().as_bytes()).is_err());
    }
}
