//! PURE. TCB statuses and how the platform's and the QE's statuses combine.

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

/// A TCB status as Intel names it in TCB info and QE identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
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

/// Which kind of collateral level a status is read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LevelKind {
    /// A platform TCB level of TCB info.
    Platform,
    /// A TDX module identity's TCB level.
    TdxModule,
    /// A QE identity TCB level.
    QuotingEnclave,
}

/// A collateral level whose status is unknown or not valid for its kind of level.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("TCB status `{status}` is not valid on a {} level", match kind {
    LevelKind::Platform => "platform TCB",
    LevelKind::TdxModule => "TDX module TCB",
    LevelKind::QuotingEnclave => "QE identity TCB",
})]
pub struct InvalidLevelStatus {
    /// The status as written.
    pub status: String,
    /// Where it was read.
    pub kind: LevelKind,
}

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

    /// A status as a level of `kind` may spell it (Intel QVL's and dcap-qvl's sets): a
    /// status outside the set would otherwise be dropped when statuses converge.
    pub fn parse_level(s: &str, kind: LevelKind) -> Result<Self, InvalidLevelStatus> {
        use TcbStatus::*;
        let fits = |status: Self| match kind {
            LevelKind::Platform => status.is_published(),
            LevelKind::TdxModule => matches!(status, UpToDate | OutOfDate | Revoked),
            LevelKind::QuotingEnclave => matches!(
                status,
                UpToDate | ConfigurationNeeded | OutOfDate | OutOfDateConfigurationNeeded | Revoked
            ),
        };
        match s.parse::<Self>() {
            Ok(status) if fits(status) => Ok(status),
            _ => Err(InvalidLevelStatus {
                status: s.to_owned(),
                kind,
            }),
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

    /// Combines the platform's status with a component's, the QE's or the TDX module's
    /// (Intel QVL `convergeTcbStatusWithQeTcbStatus`). Stricter than dcap-qvl 0.7.1, which
    /// ignores a QE level `OutOfDateConfigurationNeeded`: it counts as out of date here.
    pub fn converge(platform: TcbStatus, component: TcbStatus) -> TcbStatus {
        use TcbStatus::*;
        match (component, platform) {
            (Revoked, _) | (_, Revoked) => Revoked,
            (OutOfDate | OutOfDateConfigurationNeeded, UpToDate | SwHardeningNeeded) => OutOfDate,
            (
                OutOfDate | OutOfDateConfigurationNeeded,
                ConfigurationNeeded | ConfigurationAndSwHardeningNeeded,
            ) => OutOfDateConfigurationNeeded,
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
    fn each_kind_of_level_takes_only_its_statuses() {
        use LevelKind::*;
        let ok = |s: &str, k| TcbStatus::parse_level(s, k).is_ok();
        for kind in [Platform, TdxModule, QuotingEnclave] {
            for s in ["UpToDate", "OutOfDate", "Revoked"] {
                assert!(ok(s, kind), "{s} {kind:?}");
            }
            for s in [
                "TDRelaunchAdvised",
                "TDRelaunchAdvisedConfigurationNeeded",
                "Fine",
            ] {
                assert!(!ok(s, kind), "{s} {kind:?}");
            }
        }
        for s in ["SWHardeningNeeded", "ConfigurationAndSWHardeningNeeded"] {
            assert!(
                ok(s, Platform) && !ok(s, TdxModule) && !ok(s, QuotingEnclave),
                "{s}"
            );
        }
        for s in ["ConfigurationNeeded", "OutOfDateConfigurationNeeded"] {
            assert!(
                ok(s, Platform) && !ok(s, TdxModule) && ok(s, QuotingEnclave),
                "{s}"
            );
        }
    }

    #[test]
    fn stricter_a_qe_out_of_date_needing_configuration_is_out_of_date() {
        assert_eq!(
            TcbStatus::converge(UpToDate, OutOfDateConfigurationNeeded),
            OutOfDate
        );
        assert_eq!(
            TcbStatus::converge(ConfigurationNeeded, OutOfDateConfigurationNeeded),
            OutOfDateConfigurationNeeded
        );
        assert_eq!(TcbStatus::converge(UpToDate, ConfigurationNeeded), UpToDate);
    }
}
