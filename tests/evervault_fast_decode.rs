//! Evervault's hex label (session-7 review, R7), read by the fold-and-pairs code of 496db83, against
//! the code it replaced (53e754d's `check_label` and `hex::decode`, restated here as the
//! oracle) on labels a hostile certificate could carry: any byte class (lowercase and
//! uppercase hex, other ASCII, NUL, multi-byte UTF-8), odd and even lengths, and the
//! lengths at the cap. Every label must be refused with the same error, or admitted and
//! decoded to the same bytes.

use ratls_proxy::ratls::evervault::{in_names, EvervaultError, MAX_DNS_LABEL, MAX_HEX_LEN};

/// 53e754d's reading of a carrier label (longer than a host label), restated.
fn old(label: &str) -> Result<Vec<u8>, EvervaultError> {
    if label.len() > MAX_HEX_LEN {
        return Err(EvervaultError::Oversized(label.len()));
    }
    if let Some((at, &byte)) = label
        .as_bytes()
        .iter()
        .enumerate()
        .find(|(_, b)| !matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(EvervaultError::NotHex {
            len: label.len(),
            at,
            byte,
            uppercase: byte.is_ascii_uppercase() && byte.is_ascii_hexdigit(),
        });
    }
    if !label.len().is_multiple_of(2) {
        return Err(EvervaultError::OddLength(label.len()));
    }
    Ok(hex::decode(label).unwrap_or_default())
}

/// Today's reading of the same label as the leftmost of a DNS name.
fn new(label: &str) -> Result<Vec<u8>, EvervaultError> {
    let name = format!("{label}.cage.app.cages.evervault.com");
    in_names([name.as_str()]).map(|found| found.map(|san| san.decode()).unwrap_or_default())
}

/// A small deterministic generator (no dependency): xorshift64*.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % u64::try_from(n).unwrap_or(1)).unwrap_or(0)
    }
}

/// Pieces a hostile label is made of: mostly lowercase hex, now and then anything else.
const PIECES: &[&str] = &[
    "0", "9", "a", "f", "A", "F", "g", "G", "/", ":", "@", "`", "{", "\0", "-", "_", " ", "é",
    "中", "😀", "\u{7f}", "\u{80}", "ａ",
];

fn label(rng: &mut Rng, len: usize, dirty: bool) -> String {
    let mut s = String::new();
    while s.len() < len {
        if dirty && rng.below(len.max(1)) < 2 {
            s.push_str(PIECES[rng.below(PIECES.len())]);
        } else {
            s.push(char::from(b"0123456789abcdef"[rng.below(16)]));
        }
    }
    s
}

#[test]
fn every_hostile_label_reads_as_it_did_before_the_fast_decode() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut lengths: Vec<usize> = vec![
        MAX_DNS_LABEL + 1,
        MAX_DNS_LABEL + 2,
        MAX_HEX_LEN - 2,
        MAX_HEX_LEN - 1,
        MAX_HEX_LEN,
        MAX_HEX_LEN + 1,
        MAX_HEX_LEN + 2,
    ];
    for _ in 0..400 {
        lengths.push(MAX_DNS_LABEL + 1 + rng.below(4000));
    }
    let (mut compared, mut admitted) = (0, 0);
    for len in lengths {
        for i in 0..8 {
            // Half clean (admitted when even and within the cap: the decode compared), half
            // with about two foreign pieces anywhere.
            let l = label(&mut rng, len, i % 2 == 1);
            if l.len() <= MAX_DNS_LABEL || l.contains('.') {
                continue;
            }
            let read = new(&l);
            assert_eq!(read, old(&l), "label of {} bytes: {l:?}", l.len());
            compared += 1;
            admitted += usize::from(read.is_ok());
        }
    }
    assert!(
        compared > 3000 && admitted > 500,
        "{compared} compared, {admitted} admitted"
    );
}
