//! The attested upstream side: connections and their pool (with the upstream cap every
//! generation shares), messages rewritten between hops, and verdicts put into the audit
//! trail before a connection carries a byte.

pub(crate) mod auditor;
pub(crate) mod pool;
pub(crate) mod rewrite;
