//! The `verify --json` object and the plain-text report, built from an [`Appraisal`].
//! Field names are a documented interface (DESIGN.md): change them only with the README.

use serde::Serialize;

use crate::appraise::refusal::RefusalCode;
use crate::appraise::Appraisal;
use crate::dcap::ids::{
    Attributes, CertSha256, Fmspc, IsvProdId, IsvSvn, MrEnclave, MrSigner, ReportData,
};
use crate::dcap::tcb::TcbStatus;
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
    /// RFC 3339 verification time.
    pub verified_at: String,
}

/// Quote fields in the JSON report.
#[derive(Serialize, Debug)]
pub(crate) struct QuoteJson {
    /// Quote format version.
    pub version: u16,
    /// `SGX`.
    pub tee: &'static str,
    /// MRENCLAVE.
    pub mrenclave: MrEnclave,
    /// MRSIGNER.
    pub mrsigner: MrSigner,
    /// ISVPRODID.
    pub isv_prod_id: IsvProdId,
    /// ISVSVN.
    pub isv_svn: IsvSvn,
    /// DEBUG attribute.
    pub debug: bool,
    /// ATTRIBUTES.
    pub attributes: Attributes,
    /// REPORTDATA.
    pub report_data: ReportData,
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
    /// TCB evaluation data number of the TCB info used.
    pub tcb_evaluation_data_number: u32,
}

impl Report {
    /// The report of one judged RA-TLS certificate.
    pub(crate) fn of_certificate(c: &CertAppraisal) -> Self {
        Self::new(
            &c.appraisal,
            c.binding.map(Binding::as_str),
            Some(c.cert_sha256),
        )
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
            quote: a.quote.as_ref().map(|q| QuoteJson {
                version: q.version.number(),
                tee: q.tee.as_str(),
                mrenclave: q.identity.mrenclave,
                mrsigner: q.identity.mrsigner,
                isv_prod_id: q.identity.isv_prod_id,
                isv_svn: q.identity.isv_svn,
                debug: q.identity.attributes.is_debug(),
                attributes: q.identity.attributes,
                report_data: q.identity.report_data,
            }),
            tcb: a.tcb.as_ref().map(|t| TcbJson {
                status: t.status,
                advisory_ids: t.advisory_ids.clone(),
                fmspc: t.fmspc,
                platform_status: t.platform_status,
                qe_status: t.qe_status,
                tcb_evaluation_data_number: t.tcb_evaluation_data_number,
            }),
            binding,
            cert_sha256,
            verified_at: a.verified_at.to_rfc3339(),
        }
    }

    /// A short report for people.
    pub(crate) fn to_text(&self) -> String {
        let mut out = String::new();
        match self.code {
            None => out.push_str("ACCEPTED\n"),
            Some(code) => {
                out.push_str(&format!("REFUSED  {code}\n"));
                for r in &self.reasons {
                    out.push_str(&format!("  reason       {r}\n"));
                }
            }
        }
        if let Some(q) = &self.quote {
            let parsed = if self.code.is_some() {
                " (parsed; see verdict)"
            } else {
                ""
            };
            out.push_str(&format!(
                "  quote        {} v{}{parsed}\n",
                q.tee, q.version
            ));
            out.push_str(&format!("  mrenclave    {}\n", q.mrenclave));
            out.push_str(&format!("  mrsigner     {}\n", q.mrsigner));
            out.push_str(&format!(
                "  isv          prod_id {}, svn {}\n",
                q.isv_prod_id, q.isv_svn
            ));
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
            out.push_str(&format!("  fmspc        {}\n", t.fmspc));
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
