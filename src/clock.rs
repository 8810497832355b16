//! EDGE. The wall clock, read here and nowhere in the pure core (which takes time as a
//! parameter, so every verification is reproducible at a recorded instant).

use crate::dcap::time::UnixTime;

impl UnixTime {
    /// The wall clock now, in whole seconds.
    pub fn now() -> Self {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Self(secs)
    }
}
