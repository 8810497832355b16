//! EDGE. The trail's optional key (`[audit] key_file`): each line then ends with an
//! HMAC-SHA256 over the rest of it, so nobody without the key can write a line that
//! verifies, however they rebuild the hash chain. The key is never logged or printed.

use std::path::Path;

use ring::hmac;

/// The shortest key accepted (bytes, after trailing whitespace is trimmed).
const MIN_KEY: usize = 16;
/// The longest key file read.
const MAX_KEY_FILE: u64 = 4096;
/// How a keyed line ends: `,"hmac":"<64 hex>"}`.
const HMAC_PREFIX: &[u8] = b",\"hmac\":\"";
const HMAC_HEX: usize = 64;

/// The trail's key.
pub(crate) struct AuditKey(hmac::Key);

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditKey(..)")
    }
}

impl AuditKey {
    /// Reads the key from `path`: a file only its owner may read (like the CA key), at least
    /// 16 bytes (raw, or the hex or base64 text of random bytes; trailing whitespace is not
    /// part of it). Errors name the file, never its content.
    pub(crate) fn read(path: &Path) -> Result<Self, String> {
        let where_ = path.display();
        let meta = std::fs::metadata(path).map_err(|e| format!("{where_}: {e}"))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(format!(
                    "{where_} is readable by group or others (mode {mode:o}); run chmod 600"
                ));
            }
        }
        if meta.len() > MAX_KEY_FILE {
            return Err(format!("{where_} is larger than {MAX_KEY_FILE} bytes"));
        }
        let mut bytes = std::fs::read(path).map_err(|e| format!("{where_}: {e}"))?;
        while bytes.last().is_some_and(u8::is_ascii_whitespace) {
            bytes.pop();
        }
        if bytes.len() < MIN_KEY {
            return Err(format!(
                "{where_} holds fewer than {MIN_KEY} bytes: too short for a key"
            ));
        }
        Ok(Self(hmac::Key::new(hmac::HMAC_SHA256, &bytes)))
    }

    /// `line` (a JSON object's text) with its HMAC as a last `hmac` member.
    pub(crate) fn seal(&self, mut line: Vec<u8>) -> Vec<u8> {
        let tag = hmac::sign(&self.0, &line);
        line.pop();
        line.extend_from_slice(HMAC_PREFIX);
        line.extend_from_slice(hex::encode(tag.as_ref()).as_bytes());
        line.extend_from_slice(b"\"}");
        line
    }

    /// True if `line` ends with an `hmac` member that is this key's HMAC of the rest of it.
    pub(crate) fn verifies(&self, line: &[u8]) -> bool {
        unseal(line).is_some_and(|(signed, tag)| hmac::verify(&self.0, &signed, &tag).is_ok())
    }
}

/// The signed text of a keyed line and its tag, if the line ends with an `hmac` member.
/// (A JSON string cannot hold an unescaped `"`, so that suffix is always the member.)
fn unseal(line: &[u8]) -> Option<(Vec<u8>, [u8; 32])> {
    let tail = HMAC_PREFIX.len().checked_add(HMAC_HEX)?.checked_add(2)?;
    let cut = line.len().checked_sub(tail)?;
    let (body, end) = line.split_at(cut);
    let digits = end.strip_prefix(HMAC_PREFIX)?.strip_suffix(b"\"}")?;
    let mut tag = [0u8; 32];
    hex::decode_to_slice(digits, &mut tag).ok()?;
    let mut signed = body.to_vec();
    signed.push(b'}');
    Some((signed, tag))
}

/// True if `line` ends with an `hmac` member (whoever made it).
pub(crate) fn is_sealed(line: &[u8]) -> bool {
    unseal(line).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(bytes: &[u8]) -> AuditKey {
        AuditKey(hmac::Key::new(hmac::HMAC_SHA256, bytes))
    }

    #[test]
    fn a_sealed_line_verifies_under_its_key_only_and_not_once_edited() {
        let line = br#"{"a":1,"b":"x\"y"}"#.to_vec();
        let sealed = key(b"0123456789abcdef").seal(line);
        assert!(serde_json::from_slice::<serde_json::Value>(&sealed).is_ok());
        assert!(key(b"0123456789abcdef").verifies(&sealed));
        assert!(!key(b"0123456789abcdeF").verifies(&sealed));
        let edited = String::from_utf8(sealed.clone())
            .expect("utf8")
            .replace("\"a\":1", "\"a\":2");
        assert!(!key(b"0123456789abcdef").verifies(edited.as_bytes()));
        assert!(!key(b"0123456789abcdef").verifies(br#"{"a":1}"#));
        assert!(is_sealed(&sealed));
        assert!(!is_sealed(b"}"));
    }

    #[cfg(unix)]
    #[test]
    fn a_key_readable_by_others_or_too_short_is_refused_without_showing_it() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("ratls-audit-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("key");
        std::fs::write(&path, "s3cret-s3cret-s3cret\n").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = AuditKey::read(&path).expect_err("readable by others");
        assert!(
            err.contains("chmod 600") && !err.contains("s3cret"),
            "{err}"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert!(AuditKey::read(&path).is_ok());
        std::fs::write(&path, "tiny-key\n").expect("write");
        let err = AuditKey::read(&path).expect_err("short");
        assert!(!err.contains("tiny-key"), "{err}");
        assert_eq!(
            format!("{:?}", key(b"s3cret-s3cret-s3cret")),
            "AuditKey(..)"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
