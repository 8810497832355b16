//! Caps on dstack evidence, checked before anything is read or allocated, so hostile input
//! cannot make us read or allocate without bound. Exceeding one is `quote_malformed`.

/// The largest versioned attestation (dstack's own decoder refuses more than 10 MiB).
pub const MAX_ATTESTATION_LEN: usize = 10 * 1024 * 1024;

/// The largest legacy event log (`.1.2`, JSON); a full boot log is ~5 KiB.
pub const MAX_EVENT_LOG_JSON_LEN: usize = 1024 * 1024;

/// The most events in one list (platform event log or runtime events); a full TDX boot
/// log has a few dozen.
pub const MAX_EVENTS: usize = 4096;

/// The largest single byte or text field other than a quote (event payloads, the VM
/// configuration, an SNP report, a Nitro document, a certificate).
pub const MAX_FIELD_LEN: usize = 1024 * 1024;

/// The most certificates in an SEV-SNP certificate chain, or PCR values and TPM events in a
/// GCP TPM quote.
pub const MAX_ITEMS: usize = 64;

/// The deepest MessagePack nesting skipped over (a GCP TPM quote is 3 levels deep).
pub const MAX_DEPTH: usize = 16;
