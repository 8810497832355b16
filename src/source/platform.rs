//! The platform a quote names (FMSPC and PCK CA name, read from its PCK leaf), remembered by
//! the quote's exact PCK chain bytes. A collateral source chooses a snapshot per quote, and
//! reading the leaf (base64 and X.509) costs about a third of verifying a new quote from a
//! known platform (`platform_lookup` in `cargo bench --bench verify`). Nothing is verified
//! or trusted here: verification checks the same certificate against the snapshot chosen.

use std::convert::Infallible;

use crate::dcap::ids::Fmspc;
use crate::dcap::known::Memo;
use crate::dcap::quote::Quote;
use crate::dcap::verify::pck_platform;

/// Lookups remembered at most: any parseable quote gets in, so fewer than the verified
/// memos hold (a chain is ~4 KB).
const CAPACITY: usize = 256;

/// [`pck_platform`] by the quote's PCK chain bytes.
pub(crate) struct PlatformOf(Memo<Option<(Fmspc, String)>>);

impl PlatformOf {
    /// The FMSPC and the PCK leaf's issuer CN, if they parse.
    pub(crate) fn of(&self, quote: &Quote<'_>) -> Option<(Fmspc, String)> {
        let found = self.0.get_or_verify(quote.qe.pck_chain_pem, || {
            Ok::<_, Infallible>(pck_platform(quote))
        });
        match found {
            Ok(platform) => platform,
            Err(never) => match never {},
        }
    }
}

impl Default for PlatformOf {
    fn default() -> Self {
        Self(Memo::with_capacity(CAPACITY))
    }
}

impl std::fmt::Debug for PlatformOf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PlatformOf")
    }
}

#[cfg(all(test, feature = "sim"))]
mod tests {
    use super::*;
    use crate::dcap::tcb::TcbStatus;
    use crate::dcap::time::UnixTime;
    use crate::sim::{forge, EnclaveSpec, SimPki};

    #[test]
    fn answers_what_pck_platform_reads_and_remembers_it() {
        let now = UnixTime(1_750_000_000);
        let pki = SimPki::generate(now).expect("pki");
        let pck = pki.pck_leaf(TcbStatus::UpToDate, now).expect("pck");
        let bytes = forge(&EnclaveSpec::default(), &[0; 64], &pck).expect("quote");
        let quote = Quote::parse(&bytes).expect("parses");
        let platforms = PlatformOf::default();
        let want = pck_platform(&quote);
        assert!(want.is_some());
        assert_eq!(platforms.of(&quote), want);
        assert_eq!(platforms.of(&quote), want);
        assert_eq!(platforms.0.hits(), 1);
    }
}
