//! EDGE. `ratls-proxy audit verify`: the chain, each record's schema, where the trail starts,
//! torn lines the proxy recovered, the HMAC of every line when a key is given, and the last
//! record against a hash anchored elsewhere.
//!
//! The schema is checked field by field for what the proxy writes (required fields and their
//! types); fields it does not know are allowed, so a record that is a superset of a verdict
//! record (a newer proxy's, say) still verifies.

use std::io::{BufRead as _, BufReader, Read as _};
use std::path::Path;

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::schema::{check, hex_256, Kind};
use super::seal::{is_sealed, AuditKey};
use super::ZERO;

/// A record line longer than this is not one the proxy wrote.
pub(super) const MAX_LINE: u64 = 1 << 20;

/// What an intact trail holds.
#[derive(Debug)]
pub(crate) struct Checked {
    /// Records (torn lines not counted).
    pub(crate) records: u64,
    /// SHA-256 of the last line.
    pub(crate) last: [u8; 32],
    /// The previous file's last hash, when this file starts with a rotation record.
    pub(crate) rotated_from: Option<[u8; 32]>,
    /// Torn lines closed by a `recovered` record.
    pub(crate) recovered: u64,
    /// Every line's HMAC was checked.
    pub(crate) keyed: bool,
    /// Bytes read (the whole file, a line at a time).
    pub(crate) bytes: u64,
}

/// Why a trail does not verify.
#[derive(Debug)]
pub(crate) enum Broken {
    /// The first line (1-based) that breaks it, and why.
    At(usize, String),
    /// The trail as a whole: empty, or not ending where it should.
    Trail(String),
    /// It could not be checked (unreadable; keyed and no key given).
    CannotCheck(String),
}

/// Lines that did not verify, kept until a line says whether the proxy recovered them: the
/// first one's number and why, and the SHA-256 of them all (joined by newlines).
struct Pending {
    line: usize,
    why: String,
    torn: Sha256,
}

/// Checks the trail in `path`: every record's schema and chain link, where it starts (its
/// first record, or a rotation record), torn lines only where a `recovered` record names
/// them, every line's HMAC under `key`, and the last record's hash against `expect_last`.
pub(crate) fn verify_file(
    path: &Path,
    key: Option<&AuditKey>,
    expect_last: Option<[u8; 32]>,
) -> Result<Checked, Broken> {
    let file =
        std::fs::File::open(path).map_err(|e| Broken::CannotCheck(format!("cannot read: {e}")))?;
    let mut reader = BufReader::new(file);
    let mut out = Checked {
        records: 0,
        last: ZERO,
        rotated_from: None,
        recovered: 0,
        keyed: key.is_some(),
        bytes: 0,
    };
    let mut prev = ZERO;
    let mut seq = None::<u64>;
    let mut pending: Option<Pending> = None;
    let mut n = 0usize;
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = (&mut reader)
            .take(MAX_LINE.saturating_add(1))
            .read_until(b'\n', &mut line)
            .map_err(|e| Broken::CannotCheck(format!("cannot read: {e}")))?;
        if read == 0 {
            break;
        }
        out.bytes = out
            .bytes
            .saturating_add(u64::try_from(read).unwrap_or(u64::MAX));
        n = n.saturating_add(1);
        if line.last() != Some(&b'\n') {
            if u64::try_from(line.len()).unwrap_or(u64::MAX) > MAX_LINE {
                return Err(Broken::At(
                    n,
                    format!("a line longer than {MAX_LINE} bytes"),
                ));
            }
            return Err(Broken::At(
                n,
                "the last line is not terminated (a torn write the proxy has not closed yet, or truncated)".into(),
            ));
        }
        line.pop();
        if key.is_none() && is_sealed(&line) {
            return Err(Broken::CannotCheck(
                "the trail is keyed (its lines carry an HMAC): give --key-file to check it".into(),
            ));
        }
        let sha256: [u8; 32] = Sha256::digest(&line).into();
        let first = out.records == 0;
        let torn_sha256 = pending
            .as_ref()
            .map(|p| <[u8; 32]>::from(p.torn.clone().finalize()));
        let judged = judge(&line, key, prev, seq).and_then(|(kind, v)| match (kind, &pending) {
            (Kind::Recovered, Some(_)) => {
                let o = v.as_object().ok_or("not an object")?;
                if Some(hex_256(o, "torn_sha256")?) != torn_sha256 {
                    return Err("a recovered record naming other torn bytes".into());
                }
                Ok((kind, v))
            }
            (Kind::Recovered, None) => Err("a recovered record with no torn line before it".into()),
            (_, Some(_)) => Err("not a recovered record".into()),
            (Kind::Rotated, None) if !first => {
                Err("a rotation record that is not the first record".into())
            }
            (_, None) => Ok((kind, v)),
        });
        match judged {
            Ok((kind, v)) => {
                pending = None;
                if kind == Kind::Rotated {
                    out.rotated_from = v
                        .as_object()
                        .and_then(|o| hex_256(o, "previous_sha256").ok());
                }
                if kind == Kind::Recovered {
                    out.recovered = out.recovered.saturating_add(1);
                }
                seq = v["seq"].as_u64();
                prev = sha256;
                out.records = out.records.saturating_add(1);
            }
            // Lines that fail might be ones the proxy closed after a crash: a `recovered`
            // record naming them follows, chained to the record before them.
            Err(why) => match &mut pending {
                Some(p) => {
                    p.torn.update(b"\n");
                    p.torn.update(&line);
                }
                None => {
                    let why = if line.is_empty() {
                        "an empty line".to_owned()
                    } else {
                        why
                    };
                    let mut torn = Sha256::new();
                    torn.update(&line);
                    pending = Some(Pending { line: n, why, torn });
                }
            },
        }
    }
    if let Some(p) = pending {
        return Err(Broken::At(p.line, p.why));
    }
    if out.records == 0 {
        return Err(Broken::Trail(
            "no records: an empty trail proves nothing (was it emptied?)".into(),
        ));
    }
    out.last = prev;
    if let Some(want) = expect_last {
        if want != out.last {
            return Err(Broken::Trail(format!(
                "the last record's sha256 is {}, not the expected {} (records were removed after it, or added)",
                hex::encode(out.last),
                hex::encode(want)
            )));
        }
    }
    Ok(out)
}

/// One line against the chain so far: parses, seals, links, counts and schema; its kind and
/// the record (each line is parsed once).
fn judge(
    line: &[u8],
    key: Option<&AuditKey>,
    prev: [u8; 32],
    seq: Option<u64>,
) -> Result<(Kind, Value), String> {
    let v: Value = serde_json::from_slice(line).map_err(|e| format!("not a JSON object: {e}"))?;
    if key.is_some_and(|k| !k.verifies(line)) {
        return Err(if is_sealed(line) {
            "its HMAC does not verify under the key (forged or edited)".into()
        } else {
            "no HMAC, but the trail is keyed".into()
        });
    }
    let kind = check(&v)?;
    if v["prev_sha256"].as_str() != Some(hex::encode(prev).as_str()) {
        return Err(
            "prev_sha256 is not the SHA-256 of the previous line (edited, reordered or removed lines)"
                .into(),
        );
    }
    let this = v["seq"].as_u64().unwrap_or(0);
    match seq {
        Some(before) if this != before.saturating_add(1) => {
            Err(format!("seq {this} does not follow {before}"))
        }
        None if this != 1 && kind != Kind::Rotated => Err(format!(
            "the trail starts at seq {this}, neither its first record nor a rotation record: its beginning was removed"
        )),
        _ => Ok((kind, v)),
    }
}

#[cfg(test)]
pub(super) mod tests {
    use serde_json::json;

    use super::*;

    /// A verdict record as the proxy writes one, unchained.
    pub(in crate::audit) fn verdict_record(accepted: bool) -> Value {
        let h = |b: &str| b.repeat(32);
        json!({
            "time": "2026-01-01T00:00:00Z", "host": "a.test", "port": 443, "tee": "SGX",
            "verdict": if accepted { "accepted" } else { "refused" },
            "code": if accepted { Value::Null } else { json!("mrenclave_mismatch") },
            "reasons": if accepted { json!([]) } else { json!(["MRENCLAVE … not allowed"]) },
            "cert_sha256": h("0a"), "quote_sha256": h("0b"), "policy_sha256": h("0c"),
            "generation": 1,
            "tcb": {"status": "UpToDate", "advisory_ids": [], "fmspc": "00606a000000", "tcb_evaluation_data_number": 17},
            "collateral": {"tcb_info_sha256": h("01"), "qe_identity_sha256": h("02"), "pck_crl_sha256": h("03"), "root_ca_crl_sha256": h("04")},
            "mrenclave": h("e1"), "mrsigner": h("51"), "isv_prod_id": 1, "isv_svn": 2,
        })
    }

    /// Chains `records` (seq from 1, prev_sha256) into a file's text; raw lines pass as is.
    pub(in crate::audit) fn chain(records: Vec<Result<Value, &str>>) -> String {
        let (mut text, mut prev, mut seq) = (String::new(), ZERO, 0u64);
        for r in records {
            let line = match r {
                Ok(mut v) => {
                    seq += 1;
                    if v.get("seq").is_none() {
                        v["seq"] = json!(seq);
                    }
                    v["prev_sha256"] = json!(hex::encode(prev));
                    let line = v.to_string();
                    prev = Sha256::digest(line.as_bytes()).into();
                    line
                }
                Err(raw) => raw.to_owned(),
            };
            text.push_str(&line);
            text.push('\n');
        }
        text
    }

    fn verify_text(name: &str, text: &str) -> Result<Checked, Broken> {
        let path = std::env::temp_dir().join(format!("ratls-audit-{name}-{}", std::process::id()));
        std::fs::write(&path, text).expect("write");
        let r = verify_file(&path, None, None);
        let _ = std::fs::remove_file(&path);
        r
    }

    fn at(r: Result<Checked, Broken>) -> (usize, String) {
        match r {
            Err(Broken::At(n, why)) => (n, why),
            other => panic!("expected a broken line, got {other:?}"),
        }
    }

    #[test]
    fn a_superset_of_a_verdict_record_verifies_and_a_wrong_type_does_not() {
        let mut cut = verdict_record(false);
        cut["cut"] = json!(true);
        cut["bytes_relayed"] = json!(123);
        let mut cached = verdict_record(true);
        cached["event"] = json!("cached");
        let mut at_risk = verdict_record(true);
        at_risk["early"] = json!({"tcb_evaluation_data_number": 18, "status": "OutOfDate",
            "advisory_ids": ["INTEL-SA-1"], "at_risk": true, "code": "tcb_status_not_allowed",
            "reasons": ["TCB status OutOfDate is not accepted"], "standard_from": "2026-08-13T00:00:00Z"});
        let mut unjudged = verdict_record(true);
        unjudged["early"] = json!({"at_risk": false, "unavailable": "no early TCB data is held"});
        let ok = verify_text(
            "superset",
            &chain(vec![
                Ok(verdict_record(true)),
                Ok(cut),
                Ok(cached),
                Ok(at_risk),
                Ok(unjudged),
            ]),
        )
        .expect("verifies");
        assert_eq!(ok.records, 5);
        for (field, bad, says) in [
            ("port", json!("443"), "`port`"),
            ("code", json!("no_such_code"), "refusal `code`"),
            ("cert_sha256", json!("XYZ"), "`cert_sha256`"),
            ("tee", json!("SEV"), "`tee`"),
            ("tcb", json!({"status": "UpToDate"}), "`advisory_ids`"),
            ("reasons", json!("one"), "`reasons`"),
            ("time", json!("yesterday"), "`time`"),
            ("early", json!({"at_risk": "yes"}), "`at_risk`"),
            (
                "early",
                json!({"at_risk": true}),
                "`tcb_evaluation_data_number`",
            ),
            ("early", json!(7), "`early`"),
        ] {
            let mut r = verdict_record(false);
            r[field] = bad;
            let (n, why) = at(verify_text(field, &chain(vec![Ok(r)])));
            assert_eq!(n, 1);
            assert!(why.contains(says), "{field}: {why}");
        }
        let mut r = verdict_record(true);
        r["collateral"] = Value::Null;
        let (_, why) = at(verify_text("no-collateral", &chain(vec![Ok(r)])));
        assert!(why.contains("accepted verdict without"), "{why}");
    }

    #[test]
    fn torn_lines_only_where_a_recovered_record_names_them() {
        let torn = r#"{"cert_sha256":"0a0a"#;
        let recovered = |t: &str| {
            json!({"event": "recovered", "time": "2026-01-01T00:00:01Z",
                   "torn_sha256": hex::encode(Sha256::digest(t.as_bytes())), "torn_bytes": t.len()})
        };
        let good = chain(vec![
            Ok(verdict_record(true)),
            Err(torn),
            Ok(recovered(torn)),
            Ok(verdict_record(false)),
        ]);
        let ok = verify_text("recovered", &good).expect("verifies");
        assert_eq!((ok.records, ok.recovered), (3, 1));
        // A torn line nobody recovered, a recovery naming other bytes, one with nothing torn.
        let (n, _) = at(verify_text(
            "unrecovered",
            &chain(vec![
                Ok(verdict_record(true)),
                Err(torn),
                Ok(verdict_record(false)),
            ]),
        ));
        assert_eq!(n, 2);
        let (n, why) = at(verify_text(
            "other",
            &chain(vec![
                Ok(verdict_record(true)),
                Err(torn),
                Ok(recovered("{\"x")),
            ]),
        ));
        assert!(n == 2 && !why.is_empty());
        let (n, why) = at(verify_text(
            "nothing-torn",
            &chain(vec![Ok(verdict_record(true)), Ok(recovered(torn))]),
        ));
        assert!(n == 2 && why.contains("no torn line"), "{why}");
        // A rotation record only as the first record.
        let rotated = |seq: u64| {
            json!({"event": "rotated", "time": "2026-01-01T00:00:00Z",
                   "previous_sha256": "ab".repeat(32), "seq": seq})
        };
        let mut next = verdict_record(true);
        next["seq"] = json!(8);
        let ok = verify_text("rotated", &chain(vec![Ok(rotated(7)), Ok(next)])).expect("verifies");
        assert_eq!(ok.rotated_from, Some([0xab; 32]));
        let (n, why) = at(verify_text(
            "late-rotation",
            &chain(vec![Ok(verdict_record(true)), Ok(rotated(2))]),
        ));
        assert!(n == 2 && why.contains("rotation"), "{why}");
        assert!(matches!(verify_text("empty", ""), Err(Broken::Trail(_))));
    }

    #[test]
    fn opening_a_trail_closes_what_two_failed_writes_left() {
        // A torn record, closed; then a second failure tore the recovered record too.
        let mut text = chain(vec![Ok(verdict_record(true))]);
        text.push_str("{\"cert_sha256\":\"0a\n{\"event\":\"recov");
        let path = std::env::temp_dir().join(format!("ratls-audit-reopen-{}", std::process::id()));
        std::fs::write(&path, &text).expect("write");
        drop(crate::audit::AuditLog::open(&path, None).expect("opens"));
        let checked = verify_file(&path, None, None);
        let after = std::fs::read_to_string(&path).unwrap_or_default();
        let _ = std::fs::remove_file(&path);
        let checked = checked.unwrap_or_else(|e| panic!("{e:?}\n{after}"));
        assert_eq!((checked.records, checked.recovered), (2, 1), "{after}");
    }
}
