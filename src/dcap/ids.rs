//! Newtypes for the identity values a quote carries, so an MRENCLAVE can never be
//! passed where an MRSIGNER is expected. All print and parse as lower-case hex.

use std::fmt;

use serde::{Serialize, Serializer};

/// A hex string of the wrong length or with non-hex characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected {expected} hex digits for {what}, got `{got}`")]
pub struct BadHex {
    /// What was being parsed.
    pub what: &'static str,
    /// Number of hex digits required.
    pub expected: usize,
    /// The offending input.
    pub got: String,
}

macro_rules! hex_newtype {
    ($(#[$doc:meta])* $name:ident, $len:expr, $what:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; $len]);

        impl $name {
            /// Parses exactly the right number of hex digits (either case).
            pub fn from_hex(text: &str) -> Result<Self, BadHex> {
                let mut out = [0u8; $len];
                hex::decode_to_slice(text.trim(), &mut out).map_err(|_| BadHex {
                    what: $what,
                    expected: $len * 2,
                    got: text.to_owned(),
                })?;
                Ok(Self(out))
            }

            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), hex::encode(self.0))
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&hex::encode(self.0))
            }
        }

        impl std::str::FromStr for $name {
            type Err = BadHex;
            fn from_str(s: &str) -> Result<Self, BadHex> {
                Self::from_hex(s)
            }
        }
    };
}

// Sibling TEE cores (`snp`) name their values with the same newtype.
pub(crate) use hex_newtype;

hex_newtype!(
    /// SHA-256 measurement of the enclave's initial contents.
    MrEnclave, 32, "MRENCLAVE"
);
hex_newtype!(
    /// SHA-256 of the enclave signer's RSA modulus.
    MrSigner, 32, "MRSIGNER"
);
hex_newtype!(
    /// The 64 bytes the enclave put into its report (RA-TLS: key hash in the first half).
    ReportData, 64, "REPORTDATA"
);
hex_newtype!(
    /// Family-Model-Stepping-Platform-CustomSKU: selects the TCB info for a platform.
    Fmspc, 6, "FMSPC"
);
hex_newtype!(
    /// Provisioning Certification Enclave identifier.
    PceId, 2, "PCEID"
);
hex_newtype!(
    /// SGX ATTRIBUTES: FLAGS (u64 LE) then XFRM (u64 LE).
    Attributes, 16, "ATTRIBUTES"
);
hex_newtype!(
    /// The CPU security version number at report time.
    CpuSvn, 16, "CPUSVN"
);
hex_newtype!(
    /// SHA-256 of a certificate's DER encoding.
    CertSha256, 32, "certificate SHA-256"
);

hex_newtype!(
    /// SHA-384 measurement of a TD's initial contents (MRTD).
    MrTd, 48, "MRTD"
);
hex_newtype!(
    /// A TD runtime measurement register (RTMR0..3), SHA-384 extended.
    Rtmr, 48, "RTMR"
);
hex_newtype!(
    /// SHA-384 measurement of the TDX module (MRSEAM).
    MrSeam, 48, "MRSEAM"
);
hex_newtype!(
    /// The TDX module's signer (MRSIGNERSEAM); zero for Intel's module.
    MrSignerSeam, 48, "MRSIGNERSEAM"
);
hex_newtype!(
    /// Software-defined ID of the TD's configuration (MRCONFIGID).
    MrConfigId, 48, "MRCONFIGID"
);
hex_newtype!(
    /// Software-defined ID of the TD's owner (MROWNER).
    MrOwner, 48, "MROWNER"
);
hex_newtype!(
    /// Software-defined ID of the owner's configuration (MROWNERCONFIG).
    MrOwnerConfig, 48, "MROWNERCONFIG"
);
hex_newtype!(
    /// Measurement of the service TDs bound to the TD (TD 1.5).
    MrServiceTd, 48, "MR_SERVICETD"
);
hex_newtype!(
    /// TEE_TCB_SVN: the TDX module's and platform's TCB component SVNs.
    TeeTcbSvn, 16, "TEE_TCB_SVN"
);
hex_newtype!(
    /// TD_ATTRIBUTES (u64 LE): DEBUG is bit 0, SEPT_VE_DISABLE bit 28.
    TdAttributes, 8, "TD_ATTRIBUTES"
);
hex_newtype!(
    /// XFAM: the extended features the TD may use (u64 LE).
    Xfam, 8, "XFAM"
);
hex_newtype!(
    /// SEAM_ATTRIBUTES of the TDX module (u64 LE).
    SeamAttributes, 8, "SEAM_ATTRIBUTES"
);

impl TdAttributes {
    /// TUD.DEBUG (bit 0): the host can read and change the TD's state.
    pub fn is_debug(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// The attributes as the little-endian u64 the TDX ABI defines.
    pub fn bits(&self) -> u64 {
        u64::from_le_bytes(self.0)
    }
}

impl Attributes {
    /// ATTRIBUTES.FLAGS bit 1: the enclave runs in debug mode and its memory is readable.
    pub fn is_debug(&self) -> bool {
        self.0[0] & 0x02 != 0
    }
}

/// The enclave's product ID, chosen by its signer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct IsvProdId(pub u16);

/// The enclave's security version number, chosen by its signer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct IsvSvn(pub u16);

impl fmt::Display for IsvProdId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for IsvSvn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_lower_case_hex() {
        let text = "33D8736DB756ED4997E04BA358D27833188F1932FF7B1D156904D3F560452FBB";
        let m = MrEnclave::from_hex(text).ok();
        assert_eq!(m.map(|m| m.to_string()), Some(text.to_lowercase()));
    }

    #[test]
    fn rejects_wrong_length_and_non_hex() {
        assert!(MrEnclave::from_hex("abcd").is_err());
        assert!(Fmspc::from_hex("00a06711000g").is_err());
    }

    #[test]
    fn debug_is_flags_bit_one() {
        let mut a = [0u8; 16];
        a[0] = 0x05;
        assert!(!Attributes(a).is_debug());
        a[0] = 0x07;
        assert!(Attributes(a).is_debug());
    }
}
