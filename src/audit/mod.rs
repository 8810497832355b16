//! EDGE. The audit trail: one hash-chained JSON line per verdict the proxy makes (accepted
//! or refused; a cache hit is not a new verdict, but the first use of a cached verdict for
//! each host is recorded too), written before the connection it judges carries a byte.
//! Each line carries `prev_sha256`, the SHA-256 of the previous line's bytes (64 zeros for
//! the first line of a file), so an edited, reordered or truncated file is found by
//! `ratls-proxy audit verify` (`verify.rs`, which also checks each record's schema); with
//! `[audit] key_file` each line also carries an HMAC (`seal.rs`), so nobody without the key
//! can forge a chain. The file is opened for appending, never truncated, and reopened on
//! SIGUSR1 (log rotation): a new file starts with a `rotated` record naming the previous
//! file's last hash. A torn last line (a crash or a full disk mid-write) is closed and
//! followed by a `recovered` record naming it, so the records after it still verify.

mod schema;
mod seal;
mod tail;
mod verify;

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

pub(crate) use self::seal::AuditKey;
use self::tail::read_tail;
pub(crate) use self::verify::{verify_file, Broken};
use crate::appraise::nitro_policy::NitroPolicy;
use crate::appraise::policy::EnclavePolicy;
use crate::appraise::snp_policy::SnpPolicy;
use crate::dcap::identity::Identity;
use crate::dcap::time::UnixTime;
use crate::ratls::{CertAppraisal, GenerationId};

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
    pub(crate) generation: GenerationId,
    /// The entry's policy.
    pub(crate) policy: &'a EnclavePolicy,
    /// A `tee = "snp"` entry's SEV-SNP policy (`policy_sha256` covers it too).
    pub(crate) snp: Option<&'a SnpPolicy>,
    /// A `tee = "nitro"` entry's AWS Nitro policy (`policy_sha256` covers it too).
    pub(crate) nitro: Option<&'a NitroPolicy>,
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

/// What a verdict record is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Use {
    /// A verdict just made.
    Verdict,
    /// A verdict from the cache, admitting a connection to a host it had not admitted yet.
    Cached,
}

struct State {
    file: File,
    seq: u64,
    prev: [u8; 32],
    /// A write failed: the file may end in a torn line, to be closed before the next record.
    torn: bool,
}

/// An open audit trail.
pub(crate) struct AuditLog {
    path: PathBuf,
    key: Option<AuditKey>,
    state: Mutex<State>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("path", &self.path)
            .field("keyed", &self.key.is_some())
            .finish()
    }
}

fn open_append(path: &Path) -> std::io::Result<File> {
    let mut o = OpenOptions::new();
    o.create(true).read(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o.open(path)
}

fn seq_of(line: &[u8]) -> u64 {
    serde_json::from_slice::<Value>(line)
        .ok()
        .and_then(|v| v["seq"].as_u64())
        .unwrap_or(0)
}

impl AuditLog {
    /// Opens `path` for appending, continuing the chain of what it holds (closing a torn
    /// last line first); with `key`, every line it writes is sealed with it.
    pub(crate) fn open(path: &Path, key: Option<AuditKey>) -> std::io::Result<Self> {
        let log = Self {
            path: path.to_path_buf(),
            key,
            state: Mutex::new(State {
                file: open_append(path)?,
                seq: 0,
                prev: ZERO,
                torn: false,
            }),
        };
        {
            let mut s = log.lock()?;
            log.resume(&mut s, None)?;
        }
        Ok(log)
    }

    fn lock(&self) -> std::io::Result<std::sync::MutexGuard<'_, State>> {
        self.state
            .lock()
            .map_err(|_| std::io::Error::other("audit lock poisoned"))
    }

    /// Reopens the path (after a rotation moved the file away): a new (empty) file starts
    /// with a `rotated` record naming the last record written before; a file with records
    /// is continued; `seq` keeps counting.
    pub(crate) fn reopen(&self) -> std::io::Result<()> {
        let mut s = self.lock()?;
        let mut next = State {
            file: open_append(&self.path)?,
            seq: s.seq,
            prev: s.prev,
            torn: false,
        };
        self.resume(&mut next, Some(s.prev))?;
        *s = next;
        Ok(())
    }

    /// Positions `s` after its file's last record. An empty file after a rotation starts
    /// with a `rotated` record; junk after the last record (a torn line) is closed and a
    /// `recovered` record naming it follows, in one write.
    fn resume(&self, s: &mut State, rotated_from: Option<[u8; 32]>) -> std::io::Result<()> {
        let tail = read_tail(&mut s.file)?;
        let now = UnixTime::now();
        if tail.len == 0 {
            s.prev = ZERO;
            if let Some(previous) = rotated_from {
                let record = json!({
                    "event": "rotated",
                    "time": now.to_rfc3339(),
                    "previous_sha256": hex::encode(previous),
                });
                self.append(s, record, b"")?;
            } else {
                s.seq = 0;
            }
            return Ok(());
        }
        // Continue after the last record (a rotation into a file with records keeps
        // counting from the higher seq).
        match &tail.last {
            Some(last) => {
                if self.key.as_ref().is_some_and(|k| !k.verifies(last)) {
                    tracing::warn!(path = %self.path.display(), "the audit trail's last record is not sealed with this key: `audit verify --key-file` will report the lines before; start a keyed (or re-keyed) trail in a new file");
                }
                s.prev = Sha256::digest(last).into();
                s.seq = s.seq.max(seq_of(last));
            }
            None => s.prev = ZERO,
        }
        let junk = &tail.junk;
        if junk.len == 0 {
            return Ok(());
        }
        if let Some(whole) = &junk.whole_record {
            // A whole record that only lacked its newline: it is the last record.
            s.file.write_all(b"\n")?;
            s.prev = Sha256::digest(whole).into();
            s.seq = s.seq.max(seq_of(whole));
            return Ok(());
        }
        // What `audit verify` sees: the junk's lines, without the newline that ends the last.
        let closed = !junk.ends_with_newline;
        let record = json!({
            "event": "recovered",
            "time": now.to_rfc3339(),
            "torn_sha256": hex::encode(junk.torn_sha256),
            "torn_bytes": junk.torn_bytes,
        });
        tracing::warn!(path = %self.path.display(), torn_bytes = junk.torn_bytes, "the audit trail ended in a torn line (a crash or a full disk mid-write); closed it and wrote a recovered record");
        self.append(s, record, if closed { b"\n" } else { b"" })
    }

    /// Chains, seals and appends `record` after `before` (a newline closing a torn line) in
    /// one write, then flushes; `s` moves past it only once written.
    fn append(&self, s: &mut State, mut record: Value, before: &[u8]) -> std::io::Result<()> {
        let seq = s.seq.saturating_add(1);
        record["seq"] = json!(seq);
        record["prev_sha256"] = json!(hex::encode(s.prev));
        let mut line = record.to_string().into_bytes();
        if let Some(key) = &self.key {
            line = key.seal(line);
        }
        let digest: [u8; 32] = Sha256::digest(&line).into();
        line.push(b'\n');
        let line = [before, &line].concat();
        if let Err(e) = s.file.write_all(&line).and_then(|()| s.file.flush()) {
            s.torn = true;
            return Err(e);
        }
        s.seq = seq;
        s.prev = digest;
        // The log anchors the chain's tail, which no later line in the file covers.
        tracing::info!(target: "ratls_proxy::audit", seq, sha256 = %hex::encode(digest), "audit record written");
        Ok(())
    }

    /// Appends the record of one verdict, or of a cached verdict's first use for a host.
    pub(crate) fn record(
        &self,
        judged: Judged<'_>,
        c: &CertAppraisal,
        used: Use,
        now: UnixTime,
    ) -> std::io::Result<()> {
        let mut s = self.lock()?;
        if s.torn {
            // The failed write may have left part of a line: close it before going on.
            self.resume(&mut s, None)?;
            s.torn = false;
        }
        let mut r = record(judged, c, now);
        if used == Use::Cached {
            r["event"] = json!("cached");
        }
        self.append(&mut s, r, b"")
    }
}

/// The fields of one verdict record, as DESIGN.md "Audit trail" lists them.
fn record(judged: Judged<'_>, c: &CertAppraisal, now: UnixTime) -> Value {
    let a = &c.appraisal;
    let (verdict, code, reasons) = match c.refusal() {
        None => ("accepted", Value::Null, Vec::new()),
        Some(r) => ("refused", json!(r.code.as_str()), r.reasons.clone()),
    };
    // An Intel entry's digest is that of its policy alone (as before SEV-SNP entries).
    let policy_text = match (judged.snp, judged.nitro) {
        (None, None) => format!("{:?}", judged.policy),
        (Some(snp), _) => format!("{:?}{snp:?}", judged.policy),
        (None, Some(nitro)) => format!("{:?}{nitro:?}", judged.policy),
    };
    let mut v = json!({
        "time": now.to_rfc3339(),
        "host": judged.host,
        "port": judged.port,
        "tee": c.tee().map(str::to_uppercase),
        "verdict": verdict,
        "code": code,
        "reasons": reasons,
        "cert_sha256": c.cert_sha256.to_string(),
        "quote_sha256": c.quote_sha256.map(hex::encode),
        "policy_sha256": hex::encode(Sha256::digest(policy_text.as_bytes())),
        "generation": judged.generation.0,
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
    // Under Intel's early TCB data (the next TCB recovery): accepted verdicts, early data on.
    if let Some(early) = &a.early {
        v["early"] = early.to_json();
    }
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
    // SEV-SNP: what the verified report says, and the collateral it was verified with.
    if let Some(snp) = &c.snp {
        if let Some(id) = &snp.identity {
            v["snp"] = json!({
                "measurement": id.measurement.to_string(),
                "host_data": id.host_data.to_string(),
                "chip_id": id.chip_id.to_string(),
                "reported_tcb": id.tcb.reported.to_string(),
                "vmpl": id.vmpl,
                "guest_policy": format!("{:#x}", id.policy.0),
            });
        }
        if let Some(d) = &snp.collateral {
            v["collateral"] = json!({
                "ask_sha256": hex::encode(d.chain.intermediate),
                "crl_sha256": d.chain.crl.map(hex::encode),
                "vek_sha256": hex::encode(d.vek),
            });
        }
    }
    // AWS Nitro: what the verified document says, and which certificates a CRL covered.
    if let Some(id) = c.nitro.as_ref().and_then(|n| n.identity.as_ref()) {
        let pcrs: serde_json::Map<String, Value> = id
            .pcrs
            .iter()
            .map(|(i, p)| (i.to_string(), json!(p)))
            .collect();
        v["nitro"] = json!({
            "module_id": id.module_id,
            "timestamp": id.timestamp_ms,
            "debug": id.debug,
            "pcrs": pcrs,
            // The carrier's key binding: `dstack` (`.1.8`) or `evervault` (subjectAltName).
            "binding": c.binding.map(|b| b.as_str()),
        });
        if let Some(Ok(a)) = c.nitro.as_ref().map(|n| &n.outcome) {
            v["nitro"]["revocation"] = json!({
                "checked": a.revocation().checked,
                "unchecked": a.revocation().unchecked,
            });
        }
    }
    // dstack evidence: the app identity read from RTMR3's replayed runtime events.
    if let Some(d) = &c.dstack {
        let a = &d.app;
        v["app"] = json!({
            "dstack_wire": d.wire,
            "app_id": a.app_id,
            "compose_hash": a.compose_hash,
            "os_image_hash": a.os_image_hash,
            "instance_id": a.instance_id,
            "key_provider": a.key_provider.as_ref().map(|k| json!({"name": k.name, "id": k.id})),
        });
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
