//! EDGE. The audit trail: one hash-chained JSON line per verdict the proxy makes (accepted
//! or refused; a cache hit is not a new verdict), written before the connection it judges
//! carries a byte. Each line carries `prev_sha256`, the SHA-256 of the previous line's bytes
//! (64 zeros for the first line of a file), so an edited, reordered or truncated file is
//! found by `ratls-proxy audit verify`. The file is opened for appending, never truncated,
//! and reopened on SIGHUP (log rotation).

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::appraise::policy::EnclavePolicy;
use crate::dcap::identity::Identity;
use crate::dcap::time::UnixTime;
use crate::ratls::CertAppraisal;

/// What the chain starts from.
const ZERO: [u8; 32] = [0; 32];

/// Where one judged connection was going.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Judged<'a> {
    /// The destination host as the client named it.
    pub(crate) host: &'a str,
    /// Its port.
    pub(crate) port: u16,
    /// The configuration generation that judged it.
    pub(crate) generation: u64,
    /// The entry's policy.
    pub(crate) policy: &'a EnclavePolicy,
    /// Set when this verdict cut an exchange in flight.
    pub(crate) cut: Option<CutNote<'a>>,
}

/// An exchange in flight cut because its verdict no longer stands: the record says
/// `"verdict": "refused"`, this code and these reasons, and `"cut"`: what was cut.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CutNote<'a> {
    /// `request` (an upload), `response` or `websocket`.
    pub(crate) what: &'a str,
    /// The refusal code.
    pub(crate) code: &'a str,
    /// The refusal's reasons.
    pub(crate) reasons: &'a [String],
}

struct State {
    file: File,
    seq: u64,
    prev: [u8; 32],
}

/// An open audit trail.
pub(crate) struct AuditLog {
    path: PathBuf,
    state: Mutex<State>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("path", &self.path)
            .finish()
    }
}

/// The chain position after the file's last line: its `seq` and the SHA-256 of its bytes.
fn tail_of(path: &Path) -> std::io::Result<(u64, [u8; 32])> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((0, ZERO)),
        Err(e) => return Err(e),
    };
    let Some(last) = text.split(|b| *b == b'\n').rfind(|l| !l.is_empty()) else {
        return Ok((0, ZERO));
    };
    let seq = serde_json::from_slice::<Value>(last)
        .ok()
        .and_then(|v| v["seq"].as_u64())
        .unwrap_or(0);
    Ok((seq, Sha256::digest(last).into()))
}

fn open_append(path: &Path) -> std::io::Result<File> {
    let mut o = OpenOptions::new();
    o.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o.open(path)
}

impl AuditLog {
    /// Opens `path` for appending, continuing the chain of what it holds.
    pub(crate) fn open(path: &Path) -> std::io::Result<Self> {
        let (seq, prev) = tail_of(path)?;
        Ok(Self {
            path: path.to_path_buf(),
            state: Mutex::new(State {
                file: open_append(path)?,
                seq,
                prev,
            }),
        })
    }

    /// Reopens the path (after a rotation moved the file away): a new file starts a new
    /// chain (`prev_sha256` zeros); `seq` keeps counting.
    pub(crate) fn reopen(&self) -> std::io::Result<()> {
        let (_, prev) = tail_of(&self.path)?;
        let file = open_append(&self.path)?;
        let mut s = self
            .state
            .lock()
            .map_err(|_| std::io::Error::other("audit lock poisoned"))?;
        s.file = file;
        s.prev = prev;
        Ok(())
    }

    /// Appends the record of one verdict and flushes it.
    pub(crate) fn record(
        &self,
        judged: Judged<'_>,
        c: &CertAppraisal,
        now: UnixTime,
    ) -> std::io::Result<()> {
        let mut s = self
            .state
            .lock()
            .map_err(|_| std::io::Error::other("audit lock poisoned"))?;
        let seq = s.seq.saturating_add(1);
        let mut record = record(judged, c, now);
        record["seq"] = json!(seq);
        record["prev_sha256"] = json!(hex::encode(s.prev));
        let mut line = record.to_string().into_bytes();
        let digest: [u8; 32] = Sha256::digest(&line).into();
        line.push(b'\n');
        s.file.write_all(&line)?;
        s.file.flush()?;
        s.seq = seq;
        s.prev = digest;
        // The log anchors the chain's tail, which no later line in the file covers.
        tracing::info!(target: "ratls_proxy::audit", seq, sha256 = %hex::encode(digest), "audit record written");
        Ok(())
    }
}

/// The fields of one record, as DESIGN.md "Audit trail" lists them.
fn record(judged: Judged<'_>, c: &CertAppraisal, now: UnixTime) -> Value {
    let a = &c.appraisal;
    let (verdict, code, reasons) = match &a.outcome {
        Ok(_) => ("accepted", Value::Null, Vec::new()),
        Err(r) => ("refused", json!(r.code.as_str()), r.reasons.clone()),
    };
    let mut v = json!({
        "time": now.to_rfc3339(),
        "host": judged.host,
        "port": judged.port,
        "tee": a.quote.as_ref().map(|q| q.tee.as_str()),
        "verdict": verdict,
        "code": code,
        "reasons": reasons,
        "cert_sha256": c.cert_sha256.to_string(),
        "quote_sha256": c.quote_sha256.map(hex::encode),
        "policy_sha256": hex::encode(Sha256::digest(format!("{:?}", judged.policy).as_bytes())),
        "generation": judged.generation,
        "tcb": a.tcb.as_ref().map(|t| json!({
            "status": t.status.as_str(),
            "advisory_ids": t.advisory_ids,
            "fmspc": t.fmspc.to_string(),
            "tcb_evaluation_data_number": t.tcb_evaluation_data_number,
        })),
        "collateral": a.collateral.map(|d| json!({
            "tcb_info_sha256": hex::encode(d.tcb_info),
            "qe_identity_sha256": hex::encode(d.qe_identity),
            "pck_crl_sha256": hex::encode(d.pck_crl),
            "root_ca_crl_sha256": hex::encode(d.root_ca_crl),
        })),
    });
    // TD 1.5 only: the status of the TCB the TD runs on now, which a relaunch verdict rests on.
    if let Some(current) = a.tcb.as_ref().and_then(|t| t.current_status) {
        v["tcb"]["current_status"] = json!(current.as_str());
    }
    match a.quote.as_ref().map(|q| &q.identity) {
        Some(Identity::Sgx(e)) => {
            v["mrenclave"] = json!(e.mrenclave.to_string());
            v["mrsigner"] = json!(e.mrsigner.to_string());
            v["isv_prod_id"] = json!(e.isv_prod_id.0);
            v["isv_svn"] = json!(e.isv_svn.0);
        }
        Some(Identity::Td(t)) => {
            v["mrtd"] = json!(t.mr_td.to_string());
            for (i, r) in t.rtmr.iter().enumerate() {
                v[format!("rtmr{i}")] = json!(r.to_string());
            }
        }
        None => {}
    }
    // A cut rests on the last appraisal of the certificate, which may have been accepted (a
    // host no longer configured): what ended the exchange is the refusal.
    if let Some(cut) = judged.cut {
        v["verdict"] = json!("refused");
        v["code"] = json!(cut.code);
        v["reasons"] = json!(cut.reasons);
        v["cut"] = json!(cut.what);
    }
    v
}

/// Checks the chain of an audit file: `Ok((records, SHA-256 of the last line))` if intact,
/// else the first line (1-based) that breaks it and why. No later line chains the last one:
/// anchor its hash elsewhere (the proxy logs each record's hash) to cover it too.
pub(crate) fn verify_file(path: &Path) -> Result<(u64, [u8; 32]), (usize, String)> {
    let text = std::fs::read(path).map_err(|e| (0, format!("cannot read: {e}")))?;
    let mut prev = ZERO;
    let mut seq = None::<u64>;
    let mut count = 0u64;
    let lines: Vec<&[u8]> = text.split(|b| *b == b'\n').collect();
    let last = lines.len().saturating_sub(1);
    for (i, line) in lines.iter().enumerate() {
        let n = i.saturating_add(1);
        if line.is_empty() {
            if i == last {
                break;
            }
            return Err((n, "an empty line".into()));
        }
        if i == last {
            return Err((n, "the last line is not terminated (truncated?)".into()));
        }
        let v: Value =
            serde_json::from_slice(line).map_err(|e| (n, format!("not a JSON object: {e}")))?;
        if v["prev_sha256"].as_str() != Some(hex::encode(prev).as_str()) {
            return Err((
                n,
                "prev_sha256 is not the SHA-256 of the previous line (edited, reordered or removed lines)"
                    .into(),
            ));
        }
        let this = v["seq"].as_u64().ok_or((n, "no seq".to_owned()))?;
        if let Some(before) = seq {
            if this != before.saturating_add(1) {
                return Err((n, format!("seq {this} does not follow {before}")));
            }
        }
        seq = Some(this);
        prev = Sha256::digest(line).into();
        count = count.saturating_add(1);
    }
    Ok((count, prev))
}
