//! Shared helpers for the Nitro tests: the real documents and where their parts are.
#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;

pub mod oracle;

/// The fixtures' `dstack/` directory, or `None` with a notice (as `common::fixtures`).
pub fn dstack_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("RATLS_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures"));
    let d = dir.join("dstack");
    if d.join("nsm_qvl_nitro_attestation.bin").is_file() {
        Some(d)
    } else {
        eprintln!(
            "NOTICE: Nitro fixtures not found under {} (set RATLS_FIXTURES)",
            d.display()
        );
        None
    }
}

/// The COSE_Sign1 inside a dstack `VersionedAttestation` V0 of the Nitro variant.
///
/// All three real Nitro fixtures are such envelopes (the "raw" NSM one too: `00 02`, a SCALE
/// compact length, the COSE_Sign1, then the runtime events, report_data and config). This
/// TEST helper reads only the two enum indices and the compact length; phase 2 reads the
/// envelope with the real dstack parser (branch `dstack`).
pub fn cose_in_dstack_v0(bytes: &[u8]) -> &[u8] {
    assert_eq!(bytes.first(), Some(&0), "VersionedAttestation::V0");
    assert_eq!(
        bytes.get(1),
        Some(&2),
        "AttestationQuote::DstackNitroEnclave"
    );
    let b = |i: usize| usize::from(bytes[i]);
    let (len, at) = match bytes[2] & 3 {
        0 => (b(2) >> 2, 3),
        1 => ((b(2) | b(3) << 8) >> 2, 4),
        2 => ((b(2) | b(3) << 8 | b(4) << 16 | b(5) << 24) >> 2, 6),
        _ => panic!("big-integer compact length"),
    };
    &bytes[at..at + len]
}

/// A real document's COSE_Sign1 bytes, by fixture file name.
pub fn cose(name: &str) -> Option<Vec<u8>> {
    let dir = dstack_dir()?;
    let bytes = std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("read {name}: {e}"));
    Some(cose_in_dstack_v0(&bytes).to_vec())
}

/// The raw NSM fixture (`nsm_qvl_nitro_attestation.bin`).
pub const NSM: &str = "nsm_qvl_nitro_attestation.bin";
/// The dstack-wrapped production document.
pub const DSTACK: &str = "nitro_attestation.bin";
/// The dstack-wrapped debug-mode document.
pub const DSTACK_DEBUG: &str = "nitro_attestation_dbg.bin";

/// Each fixture's timestamp, milliseconds (read independently with a throwaway decoder,
/// and for `DSTACK` equal to dstack's own verified snapshot `nitro_verify__nitro_report.snap`).
pub fn timestamp_ms(name: &str) -> u64 {
    match name {
        NSM => 1_766_668_537_578,
        DSTACK => 1_766_678_659_346,
        DSTACK_DEBUG => 1_766_650_846_577,
        _ => panic!("unknown fixture {name}"),
    }
}

/// Where a byte string `needle` sits in `haystack` (for mutating a real document's field).
pub fn offset_of(haystack: &[u8], needle: &[u8]) -> usize {
    needle.as_ptr().addr() - haystack.as_ptr().addr()
}
