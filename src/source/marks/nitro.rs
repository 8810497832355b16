//! EDGE. AWS Nitro Enclaves CRLs under the same high-water marks as Intel's and AMD's CRLs:
//! keyed by the pinned Nitro root (its SHA-256 is the root's key) and the issuing CA's
//! subject, ordered by thisUpdate.

use super::{CrlMark, Marks, Refused};
use crate::dcap::ids::CertSha256;
use crate::dcap::time::UnixTime;

impl Marks {
    /// Admits a CRL of the Nitro CA named `issuer` (under the pinned root whose DER hashes
    /// to `root`) issued at `this_update` if no CRL of that CA issued later was seen, and
    /// raises the mark.
    pub(crate) fn admit_nitro_crl(
        &self,
        root: &CertSha256,
        issuer: &str,
        this_update: UnixTime,
    ) -> Result<(), Refused> {
        let crl = CrlMark {
            issuer: format!("AWS Nitro {issuer}"),
            what: "the AWS Nitro Enclaves CRL",
            from: this_update.0,
        };
        self.admit_marks(root, Vec::new(), vec![crl])
    }
}
