//! Size caps, checked before anything is read or allocated. The bounds AWS documents
//! ("Nitro Enclaves attestation process" §3.1, §3.2.2.2) are used as they are; where AWS
//! sets none, the cap is generous over what the hypervisor emits and says so.

/// The COSE_Sign1 payload: AWS's `bstr .size (1..16384)`.
pub const MAX_PAYLOAD_LEN: usize = 16 * 1024;

/// The whole COSE_Sign1: the payload, a few header bytes and the 96-byte signature.
pub const MAX_COSE_LEN: usize = MAX_PAYLOAD_LEN + 1024;

/// The serialized protected header (the hypervisor's is 4 bytes, `{1: -35}`).
pub const MAX_PROTECTED_LEN: usize = 256;

/// Header parameters in the protected header (AWS's has one).
pub const MAX_HEADER_PARAMS: usize = 8;

/// An ES384 signature: `r ‖ s`, 48 bytes each (RFC 9053 §2.1).
pub const ES384_SIGNATURE_LEN: usize = 96;

/// `module_id`: AWS requires it non-empty and sets no maximum; real ones are ~40 bytes.
pub const MAX_MODULE_ID_LEN: usize = 256;

/// PCRs: AWS's `$size ∈ [1, 32]`, indices `[0, 32)`.
pub const MAX_PCRS: usize = 32;

/// PCR values: AWS's `$length ∈ {32, 48, 64}`.
pub const PCR_LENS: [usize; 3] = [32, 48, 64];

/// A DER certificate, the signing one or one of the bundle: AWS's `[1, 1024]`.
pub const MAX_CERT_LEN: usize = 1024;

/// Certificates in `cabundle`: AWS requires at least one and sets no maximum; the
/// hypervisor sends the root and three intermediates (regional, zonal, instance).
pub const MAX_CABUNDLE: usize = 8;

/// `public_key`: AWS's `[1, 1024]`.
pub const MAX_PUBLIC_KEY_LEN: usize = 1024;

/// `user_data`: AWS's `[0, 512]` (§3.2.2.2; the CDDL above it says 1024, the NSM takes 512).
pub const MAX_USER_DATA_LEN: usize = 512;

/// `nonce`: AWS's `[0, 512]`.
pub const MAX_NONCE_LEN: usize = 512;

/// One CRL handed to the revocation check (AWS's intermediate CRLs are a few hundred bytes
/// while nothing is revoked).
pub const MAX_CRL_LEN: usize = 1024 * 1024;
