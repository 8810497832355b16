//! PURE. TCB statuses and how the platform's and the QE's statuses combine.

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

/// A TCB status as Intel names it in TCB info and QE identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TcbStatus {
    /// Fully patched.
    UpToDate,
    /// Patched; the enclave must apply software mitigations.
    SwHardeningNeeded,
    /// Patched; a BIOS/platform configuration change is needed.
    ConfigurationNeeded,
    /// Both of the above.
    ConfigurationAndSwHardeningNeeded,
    /// A TCB recovery is pending.
    OutOfDate,
    /// Out of date and a configuration change is needed.
    OutOfDateConfigurationNeeded,
    /// Revoked: never acceptable.
    Revoked,
}

/// A TCB status string Intel does not define.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown TCB status `{0}` (known: UpToDate, SWHardeningNeeded, ConfigurationNeeded, ConfigurationAndSWHardeningNeeded, OutOfDate, OutOfDateConfigurationNeeded, Revoked)")]
pub struct UnknownTcbStatus(pub String);

impl TcbStatus {
    /// Intel's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UpToDate => "UpToDate",
            Self::SwHardeningNeeded => "SWHardeningNeeded",
            Self::ConfigurationNeeded => "ConfigurationNeeded",
            Self::ConfigurationAndSwHardeningNeeded => "ConfigurationAndSWHardeningNeeded",
            Self::OutOfDate => "OutOfDate",
            Self::OutOfDateConfigurationNeeded => "OutOfDateConfigurationNeeded",
            Self::Revoked => "Revoked",
        }
    }

    /// Combines the platform's status with the QE's (Intel QVL `convergeTcbStatusWithQeTcbStatus`).
    pub fn converge(platform: TcbStatus, qe: TcbStatus) -> TcbStatus {
        match (qe, platform) {
            (TcbStatus::Revoked, _) | (_, TcbStatus::Revoked) => TcbStatus::Revoked,
            (TcbStatus::OutOfDate, TcbStatus::UpToDate | TcbStatus::SwHardeningNeeded) => {
                TcbStatus::OutOfDate
            }
            (
                TcbStatus::OutOfDate,
                TcbStatus::ConfigurationNeeded | TcbStatus::ConfigurationAndSwHardeningNeeded,
            ) => TcbStatus::OutOfDateConfigurationNeeded,
            (_, platform) => platform,
        }
    }
}

impl FromStr for TcbStatus {
    type Err = UnknownTcbStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "UpToDate" => Self::UpToDate,
            "SWHardeningNeeded" => Self::SwHardeningNeeded,
            "ConfigurationNeeded" => Self::ConfigurationNeeded,
            "ConfigurationAndSWHardeningNeeded" => Self::ConfigurationAndSwHardeningNeeded,
            "OutOfDate" => Self::OutOfDate,
            "OutOfDateConfigurationNeeded" => Self::OutOfDateConfigurationNeeded,
            "Revoked" => Self::Revoked,
            other => return Err(UnknownTcbStatus(other.to_owned())),
        })
    }
}

impl fmt::Display for TcbStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for TcbStatus {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::TcbStatus::*;
    use super::*;

    #[test]
    fn qe_out_of_date_downgrades_the_platform() {
        assert_eq!(TcbStatus::converge(UpToDate, OutOfDate), OutOfDate);
        assert_eq!(TcbStatus::converge(SwHardeningNeeded, OutOfDate), OutOfDate);
        assert_eq!(
            TcbStatus::converge(ConfigurationNeeded, OutOfDate),
            OutOfDateConfigurationNeeded
        );
        assert_eq!(
            TcbStatus::converge(ConfigurationAndSwHardeningNeeded, OutOfDate),
            OutOfDateConfigurationNeeded
        );
        assert_eq!(TcbStatus::converge(OutOfDate, OutOfDate), OutOfDate);
    }

    #[test]
    fn revoked_wins_and_up_to_date_qe_keeps_the_platform() {
        assert_eq!(TcbStatus::converge(UpToDate, Revoked), Revoked);
        assert_eq!(TcbStatus::converge(Revoked, UpToDate), Revoked);
        assert_eq!(
            TcbStatus::converge(ConfigurationNeeded, UpToDate),
            ConfigurationNeeded
        );
    }

    #[test]
    fn intel_spellings_round_trip() {
        for s in [
            "UpToDate",
            "SWHardeningNeeded",
            "ConfigurationNeeded",
            "ConfigurationAndSWHardeningNeeded",
            "OutOfDate",
            "OutOfDateConfigurationNeeded",
            "Revoked",
        ] {
            assert_eq!(s.parse::<TcbStatus>().map(|t| t.as_str()).ok(), Some(s));
        }
        assert!("Fine".parse::<TcbStatus>().is_err());
    }
}
