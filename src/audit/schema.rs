//! EDGE. The schema of each audit record `audit verify` checks: the fields the proxy writes,
//! with their types, for verdicts, rotation and recovery records. Fields it does not know
//! are allowed, so a superset of a verdict record (a newer proxy's) still verifies.

use serde_json::{Map, Value};

use crate::appraise::refusal::RefusalCode;
use crate::dcap::time::UnixTime;

/// What kind of record a line holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    /// A verdict, or a cached verdict's first use for a host (or any superset of one).
    Verdict,
    /// The first record of a file after a rotation.
    Rotated,
    /// Follows a torn line the proxy closed.
    Recovered,
}

type Fields = Map<String, Value>;

fn field<'a>(o: &'a Fields, name: &str) -> Result<&'a Value, String> {
    o.get(name).ok_or_else(|| format!("no `{name}`"))
}

fn string<'a>(o: &'a Fields, name: &str) -> Result<&'a str, String> {
    field(o, name)?
        .as_str()
        .ok_or_else(|| format!("`{name}` is not a string"))
}

fn number(o: &Fields, name: &str, max: u64) -> Result<u64, String> {
    field(o, name)?
        .as_u64()
        .filter(|n| *n <= max)
        .ok_or_else(|| format!("`{name}` is not a whole number up to {max}"))
}

fn is_hex(v: &Value, digits: usize) -> bool {
    v.as_str().is_some_and(|s| {
        s.len() == digits
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

fn hex(o: &Fields, name: &str, digits: usize) -> Result<(), String> {
    if is_hex(field(o, name)?, digits) {
        Ok(())
    } else {
        Err(format!("`{name}` is not {digits} lower-case hex digits"))
    }
}

/// `name` is null, or `digits` hex digits.
fn hex_or_null(o: &Fields, name: &str, digits: usize) -> Result<bool, String> {
    match field(o, name)? {
        Value::Null => Ok(false),
        v if is_hex(v, digits) => Ok(true),
        _ => Err(format!(
            "`{name}` is neither null nor {digits} lower-case hex digits"
        )),
    }
}

fn strings(o: &Fields, name: &str) -> Result<(), String> {
    match field(o, name)?.as_array() {
        Some(a) if a.iter().all(Value::is_string) => Ok(()),
        _ => Err(format!("`{name}` is not a list of strings")),
    }
}

pub(super) fn hex_256(o: &Fields, name: &str) -> Result<[u8; 32], String> {
    hex(o, name, 64)?;
    let mut out = [0u8; 32];
    hex::decode_to_slice(string(o, name)?, &mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

/// The fields every record has: `seq`, `time`, `prev_sha256`.
fn common(o: &Fields) -> Result<(), String> {
    if number(o, "seq", u64::MAX)? == 0 {
        return Err("`seq` is 0".into());
    }
    if UnixTime::parse_rfc3339(string(o, "time")?).is_none() {
        return Err("`time` is not an RFC 3339 time".into());
    }
    hex(o, "prev_sha256", 64)
}

/// A verdict record's fields and their types (DESIGN.md "Audit trail").
fn verdict(o: &Fields) -> Result<(), String> {
    let host = string(o, "host")?;
    if host.is_empty() {
        return Err("`host` is empty".into());
    }
    if number(o, "port", u64::from(u16::MAX))? == 0 {
        return Err("`port` is 0".into());
    }
    let tee = match field(o, "tee")? {
        Value::Null => None,
        Value::String(t) if ["SGX", "TDX", "SNP", "NITRO"].contains(&t.as_str()) => {
            Some(t.as_str())
        }
        _ => return Err("`tee` is neither null, \"SGX\", \"TDX\", \"SNP\" nor \"NITRO\"".into()),
    };
    let accepted = match string(o, "verdict")? {
        "accepted" => true,
        "refused" => false,
        other => return Err(format!("`verdict` is `{other}`, not accepted or refused")),
    };
    match (accepted, field(o, "code")?) {
        (true, Value::Null) => {}
        (true, _) => return Err("an accepted verdict with a `code`".into()),
        (false, Value::String(c)) if RefusalCode::ALL.iter().any(|k| k.as_str() == c) => {}
        (false, _) => return Err("a refused verdict without a known refusal `code`".into()),
    }
    strings(o, "reasons")?;
    hex(o, "cert_sha256", 64)?;
    let quoted = hex_or_null(o, "quote_sha256", 64)?;
    hex(o, "policy_sha256", 64)?;
    number(o, "generation", u64::MAX)?;
    let tcb = match field(o, "tcb")? {
        Value::Null => false,
        Value::Object(t) => {
            string(t, "status")?;
            strings(t, "advisory_ids")?;
            hex(t, "fmspc", 12)?;
            number(t, "tcb_evaluation_data_number", u64::from(u32::MAX))?;
            true
        }
        _ => return Err("`tcb` is neither null nor an object".into()),
    };
    // Records written before the early judgement existed have no `early`.
    match o.get("early") {
        None | Some(Value::Null) => {}
        Some(Value::Object(e)) => {
            if !e.get("at_risk").is_some_and(Value::is_boolean) {
                return Err("`early` has no boolean `at_risk`".into());
            }
            if e.contains_key("unavailable") {
                string(e, "unavailable")?;
            } else {
                number(e, "tcb_evaluation_data_number", u64::from(u32::MAX))?;
                strings(e, "reasons")?;
            }
        }
        Some(_) => return Err("`early` is neither null nor an object".into()),
    }
    let collateral = match field(o, "collateral")? {
        Value::Null => false,
        Value::Object(c) if tee == Some("SNP") => {
            hex(c, "ask_sha256", 64)?;
            hex_or_null(c, "crl_sha256", 64)?;
            hex(c, "vek_sha256", 64)?;
            true
        }
        Value::Object(c) => {
            for name in [
                "tcb_info_sha256",
                "qe_identity_sha256",
                "pck_crl_sha256",
                "root_ca_crl_sha256",
            ] {
                hex(c, name, 64)?;
            }
            true
        }
        _ => return Err("`collateral` is neither null nor an object".into()),
    };
    // SEV-SNP: the verified report's fields (absent when refused before its signature).
    let snp = match o.get("snp") {
        None => false,
        Some(Value::Object(r)) if tee == Some("SNP") => {
            hex(r, "measurement", 96)?;
            hex(r, "host_data", 64)?;
            hex(r, "chip_id", 128)?;
            string(r, "reported_tcb")?;
            number(r, "vmpl", u64::from(u32::MAX))?;
            string(r, "guest_policy")?;
            true
        }
        Some(_) => return Err("`snp` is not an object, or the record's tee is not SNP".into()),
    };
    let nitro = nitro_fields(o, tee)?;
    // The identity, wherever the quote parsed; an accepted verdict rests on all of it.
    let (hex_fields, numbers): (&[(&str, usize)], &[&str]) = match tee {
        Some("SGX") => (
            &[("mrenclave", 64), ("mrsigner", 64)],
            &["isv_prod_id", "isv_svn"],
        ),
        Some("SNP" | "NITRO") => (&[], &[]),
        Some(_) => (
            &[
                ("mrtd", 96),
                ("rtmr0", 96),
                ("rtmr1", 96),
                ("rtmr2", 96),
                ("rtmr3", 96),
            ],
            &[],
        ),
        None => (&[], &[]),
    };
    for (name, digits) in hex_fields {
        hex(o, name, *digits)?;
    }
    for name in numbers {
        number(o, name, u64::from(u16::MAX))?;
    }
    // dstack evidence only: the app identity the verdict judged (absent otherwise).
    match o.get("app") {
        None => {}
        Some(Value::Object(app)) => {
            string(app, "dstack_wire")?;
            for name in ["app_id", "compose_hash", "os_image_hash", "instance_id"] {
                match field(app, name)? {
                    Value::Null => {}
                    Value::String(h)
                        if h.len() % 2 == 0
                            && h.bytes()
                                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) => {}
                    _ => return Err(format!("`app.{name}` is neither null nor lower-case hex")),
                }
            }
        }
        Some(_) => return Err("`app` is not an object".into()),
    }
    // An accepted SEV-SNP verdict rests on its report and its collateral (no Intel TCB).
    if accepted && tee == Some("SNP") {
        if !(quoted && snp && collateral) {
            return Err("an accepted SEV-SNP verdict without its report, `snp` fields or collateral digests".into());
        }
        return Ok(());
    }
    // An accepted Nitro verdict rests on its document and the `nitro` fields (no Intel TCB).
    if accepted && tee == Some("NITRO") {
        if !(quoted && nitro) {
            return Err(
                "an accepted AWS Nitro verdict without its document or `nitro` fields".into(),
            );
        }
        return Ok(());
    }
    if accepted && !(tee.is_some() && quoted && tcb && collateral) {
        return Err("an accepted verdict without its quote, TEE, TCB or collateral digests".into());
    }
    Ok(())
}

/// AWS Nitro: the verified document's fields (absent when refused before its signature);
/// true when present.
fn nitro_fields(o: &Fields, tee: Option<&str>) -> Result<bool, String> {
    match o.get("nitro") {
        None => Ok(false),
        Some(Value::Object(n)) if tee == Some("NITRO") => {
            string(n, "module_id")?;
            number(n, "timestamp", u64::MAX)?;
            if !n.get("debug").is_some_and(Value::is_boolean) {
                return Err("`nitro` has no boolean `debug`".into());
            }
            let Some(Value::Object(pcrs)) = n.get("pcrs") else {
                return Err("`nitro.pcrs` is not an object".into());
            };
            for (index, value) in pcrs {
                if index.parse::<u8>().map_or(true, |i| i > 31) {
                    return Err(format!("`nitro.pcrs` has key `{index}`, not a PCR index"));
                }
                if ![64, 96, 128].iter().any(|d| is_hex(value, *d)) {
                    return Err(format!(
                        "`nitro.pcrs.{index}` is not a 32, 48 or 64-byte hex value"
                    ));
                }
            }
            if let Some(r) = n.get("revocation") {
                let Value::Object(r) = r else {
                    return Err("`nitro.revocation` is not an object".into());
                };
                strings(r, "checked")?;
                strings(r, "unchecked")?;
            }
            Ok(true)
        }
        Some(_) => Err("`nitro` is not an object, or the record's tee is not NITRO".into()),
    }
}

/// Checks one record's schema; its kind.
pub(super) fn check(v: &Value) -> Result<Kind, String> {
    let o = v.as_object().ok_or("not a JSON object")?;
    common(o)?;
    match o.get("event").and_then(Value::as_str) {
        Some("rotated") => {
            hex(o, "previous_sha256", 64)?;
            Ok(Kind::Rotated)
        }
        Some("recovered") => {
            hex(o, "torn_sha256", 64)?;
            number(o, "torn_bytes", u64::MAX)?;
            Ok(Kind::Recovered)
        }
        // A verdict, a cached verdict's first use for a host, or a superset of a verdict
        // record: all carry the verdict's fields.
        _ => verdict(o).map(|()| Kind::Verdict),
    }
}
