//! The `verify --json` object and the plain-text report, built from an [`Appraisal`].
//! Field names are a documented interface (DESIGN.md): change them only with docs/verification.md.

use std::io::Write as _;

use serde::Serialize;

use crate::appraise::early::EarlyOutcome;
use crate::appraise::refusal::RefusalCode;
use crate::appraise::{Appraisal, QuoteSummary};
use crate::dcap::identity::Identity;
use crate::dcap::ids::{
    Attributes, CertSha256, Fmspc, IsvProdId, IsvSvn, MrConfigId, MrEnclave, MrOwner,
    MrOwnerConfig, MrSeam, MrServiceTd, MrSigner, MrSignerSeam, MrTd, ReportData, Rtmr,
    TdAttributes, TeeTcbSvn, Xfam,
};
use crate::dcap::tcb::TcbStatus;
use crate::ratls::dstack::DstackReport;
use crate::ratls::{Binding, CertAppraisal};

/// The JSON report of one verification.
#[derive(Serialize, Debug)]
pub(crate) struct Report {
    /// `accepted` or `refused`.
    pub verdict: &'static str,
    /// The refusal code, or null.
    pub code: Option<RefusalCode>,
    /// Human-readable reasons (empty when accepted).
    pub reasons: Vec<String>,
    /// Parsed quote fields, or null when the quote did not parse.
    pub quote: Option<QuoteJson>,
    /// TCB judgement, or null when verification did not get that far.
    pub tcb: Option<TcbJson>,
    /// Which key binding matched (`cosmian`/`gramine`), or null.
    pub binding: Option<&'static str>,
    /// SHA-256 of the RA-TLS certificate, or null.
    pub cert_sha256: Option<CertSha256>,
    /// The judgement under Intel's early TCB data (`--early`, accepted quotes only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub early: Option<serde_json::Value>,
    /// dstack evidence (`dstack_wire`, `app`, `rtmr_replay`, `event_log`,
    /// `vm_config_os_image_hash`), once its key binding and replay hold.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub dstack: Option<DstackReport>,
    /// RFC 3339 verification time.
    pub verified_at: String,
}

/// Quote fields in the JSON report.
#[derive(Serialize, Debug)]
pub(crate) struct QuoteJson {
    /// Quote format version.
    pub version: u16,
    /// `SGX` or `TDX`.
    pub tee: &'static str,
    /// DEBUG attribute (SGX ATTRIBUTES bit 1, TD_ATTRIBUTES bit 0).
    pub debug: bool,
    /// REPORTDATA.
    pub report_data: ReportData,
    /// The SGX enclave's fields.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub sgx: Option<SgxJson>,
    /// The TD's fields.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub td: Option<TdJson>,
}

/// SGX quote fields in the JSON report.
#[derive(Serialize, Debug)]
pub(crate) struct SgxJson {
    /// MRENCLAVE.
    pub mrenclave: MrEnclave,
    /// MRSIGNER.
    pub mrsigner: MrSigner,
    /// ISVPRODID.
    pub isv_prod_id: IsvProdId,
    /// ISVSVN.
    pub isv_svn: IsvSvn,
    /// ATTRIBUTES.
    pub attributes: Attributes,
}

/// TD quote fields in the JSON report (names as DESIGN.md "verify").
#[derive(Serialize, Debug)]
pub(crate) struct TdJson {
    pub mrtd: MrTd,
    pub rtmr0: Rtmr,
    pub rtmr1: Rtmr,
    pub rtmr2: Rtmr,
    pub rtmr3: Rtmr,
    pub mrseam: MrSeam,
    pub mrsignerseam: MrSignerSeam,
    pub mrconfigid: MrConfigId,
    pub mrowner: MrOwner,
    pub mrownerconfig: MrOwnerConfig,
    pub td_attributes: TdAttributes,
    pub xfam: Xfam,
    pub tee_tcb_svn: TeeTcbSvn,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tee_tcb_svn2: Option<TeeTcbSvn>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mr_servicetd: Option<MrServiceTd>,
}

impl QuoteJson {
    fn of(q: &QuoteSummary) -> Self {
        let (sgx, td) = match &q.identity {
            Identity::Sgx(e) => (
                Some(SgxJson {
                    mrenclave: e.mrenclave,
                    mrsigner: e.mrsigner,
                    isv_prod_id: e.isv_prod_id,
                    isv_svn: e.isv_svn,
                    attributes: e.attributes,
                }),
                None,
            ),
            Identity::Td(t) => (
                None,
                Some(TdJson {
                    mrtd: t.mr_td,
                    rtmr0: t.rtmr[0],
                    rtmr1: t.rtmr[1],
                    rtmr2: t.rtmr[2],
                    rtmr3: t.rtmr[3],
                    mrseam: t.mr_seam,
                    mrsignerseam: t.mr_signer_seam,
                    mrconfigid: t.mr_config_id,
                    mrowner: t.mr_owner,
                    mrownerconfig: t.mr_owner_config,
                    td_attributes: t.td_attributes,
                    xfam: t.xfam,
                    tee_tcb_svn: t.tee_tcb_svn,
                    tee_tcb_svn2: t.tee_tcb_svn2,
                    mr_servicetd: t.mr_service_td,
                }),
            ),
        };
        Self {
            version: q.version.number(),
            tee: q.tee.as_str(),
            debug: q.identity.is_debug(),
            report_data: *q.identity.report_data(),
            sgx,
            td,
        }
    }
}

/// TCB fields in the JSON report.
#[derive(Serialize, Debug)]
pub(crate) struct TcbJson {
    /// Converged status.
    pub status: TcbStatus,
    /// Advisory IDs.
    pub advisory_ids: Vec<String>,
    /// Platform model.
    pub fmspc: Fmspc,
    /// Platform level status before convergence with the QE's.
    pub platform_status: TcbStatus,
    /// QE level status.
    pub qe_status: TcbStatus,
    /// TDX module level status (TDX quotes with a module identity).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tdx_module_status: Option<TcbStatus>,
    /// Converged status of the TCB a TD 1.5 runs on now (TEE_TCB_SVN2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_status: Option<TcbStatus>,
    /// TCB evaluation data number of the TCB info used.
    pub tcb_evaluation_data_number: u32,
}

impl Report {
    /// The report of one judged RA-TLS certificate.
    pub(crate) fn of_certificate(c: &CertAppraisal) -> Self {
        Self {
            dstack: c.dstack.as_deref().cloned(),
            ..Self::new(
                &c.appraisal,
                c.binding.map(Binding::as_str),
                Some(c.cert_sha256),
            )
        }
    }

    /// Builds the report; `binding` and `cert_sha256` come from the RA-TLS layer.
    pub(crate) fn new(
        a: &Appraisal,
        binding: Option<&'static str>,
        cert_sha256: Option<CertSha256>,
    ) -> Self {
        let (verdict, code, reasons) = match &a.outcome {
            Ok(_) => ("accepted", None, Vec::new()),
            Err(r) => ("refused", Some(r.code), r.reasons.clone()),
        };
        Self {
            verdict,
            code,
            reasons,
            quote: a.quote.as_ref().map(QuoteJson::of),
            tcb: a.tcb.as_ref().map(|t| TcbJson {
                status: t.status,
                advisory_ids: t.advisory_ids.clone(),
                fmspc: t.fmspc,
                platform_status: t.platform_status,
                qe_status: t.qe_status,
                tdx_module_status: t.tdx_module_status,
                current_status: t.current_status,
                tcb_evaluation_data_number: t.tcb_evaluation_data_number,
            }),
            binding,
            cert_sha256,
            early: a.early.as_ref().map(EarlyOutcome::to_json),
            dstack: None,
            verified_at: a.verified_at.to_rfc3339(),
        }
    }

    /// A short report for people.
    pub(crate) fn to_text(&self) -> String {
        let mut out = verdict_head(self.code, &self.reasons);
        if let Some(q) = &self.quote {
            let parsed = parsed_note(self.code.is_some());
            out.push_str(&format!(
                "  quote        {} v{}{parsed}\n",
                q.tee, q.version
            ));
            if let Some(s) = &q.sgx {
                out.push_str(&format!("  mrenclave    {}\n", s.mrenclave));
                out.push_str(&format!("  mrsigner     {}\n", s.mrsigner));
                out.push_str(&format!(
                    "  isv          prod_id {}, svn {}\n",
                    s.isv_prod_id, s.isv_svn
                ));
            }
            if let Some(td) = &q.td {
                out.push_str(&format!("  mrtd         {}\n", td.mrtd));
                for (i, r) in [td.rtmr0, td.rtmr1, td.rtmr2, td.rtmr3].iter().enumerate() {
                    out.push_str(&format!("  rtmr{i}        {r}\n"));
                }
                out.push_str(&format!("  mrseam       {}\n", td.mrseam));
                out.push_str(&format!("  mrconfigid   {}\n", td.mrconfigid));
                out.push_str(&format!("  mrowner      {}\n", td.mrowner));
                out.push_str(&format!("  td attrs     {}\n", td.td_attributes));
                out.push_str(&format!("  tee_tcb_svn  {}\n", td.tee_tcb_svn));
                if let Some(svn2) = td.tee_tcb_svn2 {
                    out.push_str(&format!("  tee_tcb_svn2 {svn2}\n"));
                }
            }
            out.push_str(&format!(
                "  debug        {}\n",
                if q.debug { "YES" } else { "no" }
            ));
            out.push_str(&format!("  report_data  {}\n", q.report_data));
        }
        if let Some(t) = &self.tcb {
            let adv = if t.advisory_ids.is_empty() {
                String::new()
            } else {
                format!(" [{}]", t.advisory_ids.join(", "))
            };
            out.push_str(&format!("  tcb          {}{adv}\n", t.status));
            if let Some(current) = t.current_status {
                out.push_str(&format!("  current tcb  {current} (TEE_TCB_SVN2)\n"));
            }
            out.push_str(&format!("  fmspc        {}\n", t.fmspc));
        }
        if let Some(e) = &self.early {
            out.push_str(&early_text(e));
        }
        if let Some(d) = &self.dstack {
            out.push_str(&dstack_text(d));
        }
        if let Some(b) = self.binding {
            out.push_str(&format!("  binding      {b}\n"));
        }
        if let Some(c) = &self.cert_sha256 {
            out.push_str(&format!("  cert sha256  {c}\n"));
        }
        out.push_str(&format!("  verified at  {}\n", self.verified_at));
        out
    }
}

/// The dstack lines of the text report: the app identity, each RTMR's replay.
fn dstack_text(d: &DstackReport) -> String {
    let absent = || "(absent)".to_owned();
    let a = &d.app;
    let mut out = format!("  dstack       {} attestation\n", d.wire);
    for (label, value) in [
        ("app_id      ", &a.app_id),
        ("compose_hash", &a.compose_hash),
        ("instance_id ", &a.instance_id),
        ("os_image_hash", &a.os_image_hash),
    ] {
        out.push_str(&format!(
            "  {label} {}\n",
            value.clone().unwrap_or_else(absent)
        ));
    }
    let provider = a
        .key_provider
        .as_ref()
        .map_or_else(absent, |k| match (&k.name, &k.id) {
            (Some(name), Some(id)) if !id.is_empty() => format!("{name}, id {id}"),
            (Some(name), _) => name.clone(),
            _ => format!("payload {}", k.payload),
        });
    out.push_str(&format!("  key_provider {provider}\n"));
    out.push_str(&format!("  mr_system    {}\n", a.mr_system));
    out.push_str(&format!("  mr_aggregated {}\n", a.mr_aggregated));
    for r in &d.rtmrs {
        let how = match r.replay {
            "replayed" => format!("replayed from {} events", r.events),
            "digests_only" => format!("not replayed ({} ACPI DATA digests only)", r.events),
            _ => "not replayed (no events carried)".to_owned(),
        };
        out.push_str(&format!("  rtmr{} replay {how}\n", r.rtmr));
    }
    out
}

/// The early judgement's lines of the text report.
fn early_text(e: &serde_json::Value) -> String {
    if let Some(why) = e["unavailable"].as_str() {
        return format!("  early tcb    not judged: {why}\n");
    }
    let number = &e["tcb_evaluation_data_number"];
    let status = e["status"].as_str().unwrap_or("no TCB level");
    let from = e["standard_from"].as_str().unwrap_or("an undated day");
    if e["at_risk"].as_bool() == Some(true) {
        let mut out = format!(
            "  early tcb    AT RISK: {status} under Intel's early TCB data (evaluation data number {number}), the standard data from {from}\n"
        );
        for r in e["reasons"].as_array().into_iter().flatten() {
            out.push_str(&format!("  early reason {}\n", r.as_str().unwrap_or("")));
        }
        out
    } else {
        format!(
            "  early tcb    {status} under Intel's early TCB data (evaluation data number {number}, the standard data from {from}): not at risk\n"
        )
    }
}

/// The verdict lines every text report (SGX/TDX, SEV-SNP, Nitro) opens with.
pub(super) fn verdict_head(code: Option<impl std::fmt::Display>, reasons: &[String]) -> String {
    let mut out = String::new();
    match code {
        None => out.push_str("ACCEPTED\n"),
        Some(code) => {
            out.push_str(&format!("REFUSED  {code}\n"));
            for r in reasons {
                out.push_str(&format!("  reason       {r}\n"));
            }
        }
    }
    out
}

/// The note after the evidence line of a refused report: it was parsed, not accepted.
pub(super) fn parsed_note(refused: bool) -> &'static str {
    if refused {
        " (parsed; see verdict)"
    } else {
        ""
    }
}

/// Writes a report to stdout. A reader that went away (`verify --json | head`) is not an
/// error of the verification: the exit code still carries the verdict, so a closed pipe ends
/// the output quietly instead of panicking as `print!` does.
pub(super) fn emit(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// `accepted` or `refused`: whether a refusal code was given.
pub(super) fn verdict_word<C>(code: Option<C>) -> &'static str {
    if code.is_none() {
        "accepted"
    } else {
        "refused"
    }
}

/// Prints `report` (JSON or `text`) and returns the exit code of its refusal `code`, the same
/// for every TEE: accepted 0, collateral that cannot be had 2 ("could not check": every check
/// that needs none has passed by then, a refusal among them comes first), any other refusal 1.
pub(super) fn finish<T: Serialize>(
    report: &T,
    json: bool,
    text: impl FnOnce(&T) -> String,
    code: Option<&str>,
) -> anyhow::Result<std::process::ExitCode> {
    let out = if json {
        serde_json::to_string_pretty(report)? + "\n"
    } else {
        text(report)
    };
    emit(&out)?;
    Ok(std::process::ExitCode::from(match code {
        None => super::EXIT_ACCEPTED,
        Some(c) if c == RefusalCode::CollateralUnavailable.as_str() => super::EXIT_CANNOT_CHECK,
        Some(_) => super::EXIT_REFUSED,
    }))
}
