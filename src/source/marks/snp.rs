//! EDGE. AMD SEV-SNP's product CRLs under the same high-water marks as Intel's CRLs: keyed by
//! the ARK that signs them (its SHA-256 is the root's key) and the product, ordered by
//! thisUpdate.

use super::{CrlMark, Marks, Refused};
use crate::dcap::ids::CertSha256;
use crate::dcap::time::UnixTime;

impl Marks {
    /// Admits an AMD product CRL (issued by the ARK whose DER hashes to `ark`) issued at
    /// `this_update` if no CRL of that product issued later was seen, and raises the mark.
    pub(crate) fn admit_snp_crl(
        &self,
        ark: &CertSha256,
        product: crate::snp::Product,
        this_update: UnixTime,
    ) -> Result<(), Refused> {
        let crl = CrlMark {
            issuer: format!("AMD ARK-{product}"),
            what: "the SEV-SNP product CRL",
            from: this_update.0,
        };
        self.admit_marks(ark, Vec::new(), vec![crl])
    }
}
