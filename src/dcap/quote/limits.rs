//! Size caps checked before any parsing or allocation, so hostile input cannot make
//! us read or allocate without bound. Exceeding one is `quote_malformed`.

/// The largest quote accepted (Gramine caps its own at 8 KiB; real SGX quotes are ~4.7 KiB,
/// TDX buffers up to 8 KiB with padding).
pub const MAX_QUOTE_LEN: usize = 32 * 1024;

/// The largest signature-data section.
pub const MAX_SIG_DATA_LEN: usize = 24 * 1024;

/// The largest QE authentication data (Intel's QE sends 32 bytes).
pub const MAX_QE_AUTH_DATA_LEN: usize = 1024;

/// The largest certification data (a PEM chain of three certificates is ~3.7 KiB).
pub const MAX_CERT_DATA_LEN: usize = 16 * 1024;

/// The PCK chain must be exactly leaf, Processor/Platform CA, root.
pub const PCK_CHAIN_LEN: usize = 3;
