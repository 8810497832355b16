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
    /// TD 1.5: the TD launched on an out-of-date TDX module and runs on an up-to-date one
    /// now (TEE_TCB_SVN2); relaunching it would make it up to date. Computed, never published.
    TdRelaunchAdvised,
    /// As [`TcbStatus::TdRelaunchAdvised`], and a configuration change is needed.
    TdRelaunchAdvisedConfigurationNeeded,
}

/// A TCB status string Intel does not define.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown TCB status `{0}` (known: UpToDate, SWHardeningNeeded, ConfigurationNeeded, ConfigurationAndSWHardeningNeeded, OutOfDate, OutOfDateConfigurationNeeded, Revoked, TDRelaunchAdvised, TDRelaunchAdvisedConfigurationNeeded)")]
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
            Self::TdRelaunchAdvised => "TDRelaunchAdvised",
            Self::TdRelaunchAdvisedConfigurationNeeded => "TDRelaunchAdvisedConfigurationNeeded",
        }
    }

    /// Whether Intel publishes this status in TCB info and QE identity levels; the TD
    /// relaunch statuses are only ever computed (Intel QVL `TDRelaunchCheck`), so collateral
    /// naming one is malformed.
    pub fn is_published(self) -> bool {
        !matches!(
            self,
            Self::TdRelaunchAdvised | Self::TdRelaunchAdvisedConfigurationNeeded
        )
    }

    /// A status as collateral spells it: one of the seven published statuses.
    pub fn parse_published(s: &str) -> Result<Self, UnknownTcbStatus> {
        match s.parse::<Self>() {
            Ok(status) if status.is_published() => Ok(status),
            _ => Err(UnknownTcbStatus(s.to_owned())),
        }
    }

    /// Whether the status asks for a configuration change (Intel QVL `isConfigurationNeeded`).
    pub fn needs_configuration(self) -> bool {
        matches!(
            self,
            Self::ConfigurationNeeded
                | Self::OutOfDateConfigurationNeeded
                | Self::ConfigurationAndSwHardeningNeeded
                | Self::TdRelaunchAdvisedConfigurationNeeded
        )
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
            "TDRelaunchAdvised" => Self::TdRelaunchAdvised,
            "TDRelaunchAdvisedConfigurationNeeded" => Self::TdRelaunchAdvisedConfigurationNeeded,
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
            "TDRelaunchAdvised",
            "TDRelaunchAdvisedConfigurationNeeded",
        ] {
            assert_eq!(s.parse::<TcbStatus>().map(|t| t.as_str()).ok(), Some(s));
        }
        assert!("Fine".parse::<TcbStatus>().is_err());
    }

    #[test]
    fn collateral_never_names_a_relaunch_status() {
        assert_eq!(TcbStatus::parse_published("OutOfDate"), Ok(OutOfDate));
        for s in [
            "TDRelaunchAdvised",
            "TDRelaunchAdvisedConfigurationNeeded",
            "Fine",
        ] {
            assert!(TcbStatus::parse_published(s).is_err(), "{s}");
        }
    }
}
