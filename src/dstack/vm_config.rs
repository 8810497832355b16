//! The VM configuration string of a dstack attestation (JSON; dstack also accepts it nested
//! as a string under `vm_config`). It is the guest's claim, covered by no measurement: dstack
//! trusts it only after recomputing MRTD and RTMR0–2 from the image it names. Report it;
//! never pin on it.

use serde::Deserialize;

/// The fields worth reporting.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VmConfig {
    /// `os_image_hash`: SHA-256 of the image's `sha256sum.txt`.
    pub os_image_hash: Option<Vec<u8>>,
    /// `image`: the image name.
    pub image: Option<String>,
}

/// The configuration is not the JSON dstack writes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the dstack VM configuration is malformed: {0}")]
pub struct VmConfigError(String);

#[derive(Deserialize)]
struct Raw {
    #[serde(default)]
    os_image_hash: Option<String>,
    #[serde(default)]
    image: Option<String>,
    #[serde(default)]
    vm_config: Option<String>,
}

/// Reads `config`; an empty string is an empty configuration.
pub fn parse(config: &str) -> Result<VmConfig, VmConfigError> {
    if config.is_empty() {
        return Ok(VmConfig::default());
    }
    let bad = |e: serde_json::Error| VmConfigError(e.to_string());
    let mut raw: Raw = serde_json::from_str(config).map_err(bad)?;
    if let Some(inner) = raw.vm_config.take() {
        raw = serde_json::from_str(&inner).map_err(bad)?;
    }
    let os_image_hash = raw
        .os_image_hash
        .map(|h| {
            hex::decode(&h).map_err(|_| VmConfigError(format!("os_image_hash `{h}` is not hex")))
        })
        .transpose()?;
    Ok(VmConfig {
        os_image_hash,
        image: raw.image,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_nested_and_empty() {
        let flat = parse(r#"{"os_image_hash":"0a0b","image":"dstack-0.6.0","cpu_count":2}"#);
        assert_eq!(
            flat,
            Ok(VmConfig {
                os_image_hash: Some(vec![10, 11]),
                image: Some("dstack-0.6.0".into())
            })
        );
        let nested =
            parse(r#"{"vm_config":"{\"os_image_hash\":\"0a0b\",\"image\":\"dstack-0.6.0\"}"}"#);
        assert_eq!(nested, flat);
        assert_eq!(parse(""), Ok(VmConfig::default()));
        assert!(parse("{").is_err());
        assert!(parse(r#"{"os_image_hash":"zz"}"#).is_err());
    }
}
