//! The refusal as a page a person reads in a browser: the host, the refusal code, the
//! reasons (as `refusal_details` allows) and what the operator can change. Self-contained
//! (inline style, no script, no external resource) and every interpolated value escaped:
//! reasons quote what the enclave presented, which is attacker-controlled text.

use std::fmt::Write as _;

use super::ProxyRefusal;
use crate::config::RefusalDetails;

/// `&`, `<`, `>`, `"` and `'` as entities: safe in text and in quoted attributes alike.
pub(super) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control characters carry nothing a reader needs and could confuse a terminal
            // that shows the page's source.
            c if c.is_control() && c != '\n' && c != '\t' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// One sentence on what happened, by kind of refusal.
fn lead(r: &ProxyRefusal) -> &'static str {
    match r {
        ProxyRefusal::Attestation(_) => {
            "did not prove that it is the enclave this proxy is configured to trust."
        }
        ProxyRefusal::Destination(..) | ProxyRefusal::DestinationDenied(_) => {
            "is not reachable through this proxy at this address."
        }
        ProxyRefusal::Unreachable(_) | ProxyRefusal::Timeout(_) | ProxyRefusal::Capacity(_) => {
            "could not be reached over an attested connection."
        }
        ProxyRefusal::RequestDenied(_)
        | ProxyRefusal::BadRequest(_)
        | ProxyRefusal::Internal(_)
        | ProxyRefusal::MethodNotAllowed(_)
        | ProxyRefusal::Misdirected(_) => "could not be served by this proxy.",
    }
}

/// What the operator (or the enclave's owner) can change, by code family.
pub(super) fn hint(code: &str) -> &'static str {
    match code {
        "debug_enclave" => "The enclave runs in DEBUG mode: its memory is open to the host, so its attestation proves nothing. Deploy a production (non-debug) build; only for development may the operator set allow_debug = true in the host's [[enclave]] entry.",
        "mrenclave_mismatch" | "mrsigner_mismatch" | "isv_prod_id_mismatch" | "mrtd_mismatch"
        | "rtmr_mismatch" | "mrconfigid_mismatch" | "mrowner_mismatch"
        | "mrownerconfig_mismatch" | "mrseam_mismatch" => "The server runs code (or a configuration) other than the one this proxy's policy allows. If this build is the one to trust, the operator adds its measurement to the host's [[enclave]] entry (`ratls-proxy verify https://HOST` prints it); otherwise the host serves something else than expected.",
        "isv_svn_too_low" | "tee_tcb_svn_too_low" => "The enclave's security version is below the policy's minimum: deploy the updated enclave, or the operator lowers the minimum in the host's [[enclave]] entry.",
        "tcb_status_not_allowed" | "advisory_not_allowed" | "revoked" => "The platform (for a TD whose status is TDRelaunchAdvised: the TDX module it launched on) is out of date or revoked by Intel: its owner updates microcode and firmware, or relaunches a TD advised to, or the operator accepts that status or advisory in the host's [[enclave]] entry (tcb_status, allowed_advisories).",
        "tcb_at_risk" => "Intel's next TCB recovery (its early TCB data) refuses this platform, and the proxy enforces it ahead of time (early = \"enforce\"): the platform's owner updates microcode, firmware or the TDX module now (the admin listener's GET /tcb says what and from when), or the operator sets early = \"warn\".",
        "collateral_expired" | "collateral_too_old" | "collateral_unavailable" => "The proxy could not get current Intel collateral for this platform: the operator checks the [collateral] source and the proxy's path to it.",
        "collateral_rollback" => "The collateral source served Intel collateral older than what this proxy has already seen for this platform (a replay would hide a TCB recovery or a revocation): the operator checks the [collateral] source (a stale or hostile PCCS); the proxy keeps refusing until the source serves current collateral.",
        "certificate_expired" | "certificate_too_old" => "The enclave's RA-TLS certificate is outside its validity or older than max_cert_age_secs: restart the enclave so it issues a fresh one, and check both clocks.",
        "td_attributes_not_allowed" | "tee_mismatch" => "The TEE or its attributes differ from what the host's [[enclave]] entry declares: the operator checks the entry's tee and the TD's configuration.",
        "xfam_mismatch" => "The TD enables CPU features (XFAM) other than those the host's [[enclave]] entry allows: the TD's owner launches it with the expected features, or the operator adds this XFAM (`ratls-proxy verify https://HOST` prints it) to the entry's xfam list.",
        "quote_malformed" | "no_quote" | "signature_invalid" | "chain_invalid"
        | "binding_mismatch" | "fmspc_mismatch" | "qe_identity_mismatch"
        | "tdx_module_mismatch" => "The attestation evidence does not verify: this server is not the enclave it claims to be, or not an RA-TLS server at all. Do not work around it; the operator checks where the host name points.",
        "enclave_port_not_configured" => "This port is not listed for the host: the operator adds it to the host's [[enclave]] entry, or you use a listed port.",
        "enclave_address_not_attested" => "This address belongs to an enclave: reach it by its configured host name, so that it is attested.",
        "local_destination_denied" => "Local addresses are not reachable through this proxy; the operator may set allow_local_destinations = true for development only.",
        "upstream_capacity" | "destination_unavailable" | "connection_timeout" => "The enclave is down, unreachable or overloaded: try again later; the operator checks that it runs and is reachable from the proxy (or raises [limits] max_upstream_connections).",
        "event_log_mismatch" => "The event log the server sent does not replay to the measurements its quote signs: the evidence was altered, so what it names (the app, its compose hash) cannot be believed. Do not work around it; the operator checks where the host name points.",
        "unsupported_tee" => "The server attests with a TEE this proxy does not verify yet (AMD SEV-SNP, AWS Nitro, GCP TDX inside dstack evidence): it cannot be admitted by this build.",
        _ => "The proxy's log records this refusal with its reasons; the operator can change the policy in the proxy's configuration.",
    }
}

/// The whole page.
pub(super) fn html(
    r: &ProxyRefusal,
    host: &str,
    reasons: &[String],
    details: RefusalDetails,
) -> String {
    let code = r.code();
    let (host, code_e) = (escape(host), escape(code));
    let mut reasons_html = String::new();
    match details {
        RefusalDetails::Full if !reasons.is_empty() => {
            reasons_html.push_str("<ul>");
            for reason in reasons {
                let _ = write!(reasons_html, "<li>{}</li>", escape(reason));
            }
            reasons_html.push_str("</ul>");
        }
        RefusalDetails::Full => reasons_html.push_str("<p>No reasons were given.</p>"),
        RefusalDetails::Code => reasons_html.push_str(
            "<p>This proxy keeps the reasons in its log (<code>refusal_details = \"code\"</code>).</p>",
        ),
    }
    format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Refused: {host} ({code_e})</title>
<style>
body{{font:16px/1.5 system-ui,sans-serif;margin:0;background:#f6f6f4;color:#1d1d1f}}
main{{max-width:46rem;margin:2.5rem auto;padding:1.5rem 2rem;background:#fff;border-top:6px solid #b3261e;border-radius:6px;box-shadow:0 1px 4px #0002}}
h1{{font-size:1.4rem;margin:.2rem 0 1rem}}
code{{font:14px ui-monospace,monospace;background:#f0eeea;padding:.1rem .3rem;border-radius:3px;word-break:break-all}}
dl{{display:grid;grid-template-columns:max-content 1fr;gap:.3rem 1rem}}
dt{{color:#5f5f5f}} dd{{margin:0}}
li{{margin:.3rem 0;word-break:break-word}}
h2{{font-size:1.05rem;margin:1.4rem 0 .4rem}}
footer{{margin-top:1.5rem;color:#5f5f5f;font-size:.9rem}}
</style></head>
<body><main>
<h1>ratls-proxy refused this connection</h1>
<p><strong>{host}</strong> {lead} Nothing was sent to it.</p>
<dl><dt>Host</dt><dd><code>{host}</code></dd>
<dt>Refusal code</dt><dd><code>{code_e}</code></dd>
<dt>Proxy-Status</dt><dd><code>{error}</code></dd></dl>
<h2>Why</h2>
{reasons_html}
<h2>What can be changed</h2>
<p>{hint}</p>
<footer>This page comes from ratls-proxy, the attesting proxy configured in this browser, not from {host}.</footer>
</main></body></html>
"#,
        lead = lead(r),
        error = escape(r.proxy_status_error()),
        hint = escape(hint(code)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::appraise::refusal::{Refusal, RefusalCode};

    const HOSTILE: &str = "<script>alert(1)</script>&\"'<img src=x onerror=alert(2)>";

    fn hostile() -> ProxyRefusal {
        ProxyRefusal::Attestation(Refusal {
            code: RefusalCode::MrenclaveMismatch,
            reasons: vec![HOSTILE.to_owned(), "second reason".to_owned()],
        })
    }

    #[test]
    fn every_interpolated_value_is_escaped() {
        let page = html(
            &hostile(),
            "evil\"'<b>&.test",
            &hostile().reasons(),
            RefusalDetails::Full,
        );
        // Nothing hostile survives as markup: no script, no injected tag, no raw quote
        // outside the page's own fixed markup.
        assert!(!page.contains("<script"), "{page}");
        assert!(!page.contains("<img"), "{page}");
        assert!(!page.contains("<b>"), "{page}");
        assert!(page.contains(
            "&lt;script&gt;alert(1)&lt;/script&gt;&amp;&quot;&#39;&lt;img src=x onerror=alert(2)&gt;"
        ));
        assert!(page.contains("evil&quot;&#39;&lt;b&gt;&amp;.test"));
        assert!(page.contains("<li>second reason</li>"));
        assert!(page.contains("mrenclave_mismatch"));
    }

    #[test]
    fn the_page_loads_nothing_and_runs_nothing() {
        let page = html(
            &hostile(),
            "h.test",
            &hostile().reasons(),
            RefusalDetails::Full,
        );
        for banned in [
            "<script", "<link", "<img", "<iframe", "src=", "href=", "url(", "@import",
        ] {
            let fixed: String = page.replace(&escape(HOSTILE), "");
            assert!(!fixed.contains(banned), "{banned} in {page}");
        }
    }

    #[test]
    fn code_only_details_keep_the_reasons_out() {
        let page = html(&hostile(), "h.test", &[], RefusalDetails::Code);
        assert!(!page.contains("alert"));
        assert!(page.contains("mrenclave_mismatch"));
        assert!(page.contains("in its log"));
    }

    #[test]
    fn debug_enclaves_get_their_own_hint() {
        let r = ProxyRefusal::Attestation(Refusal {
            code: RefusalCode::DebugEnclave,
            reasons: vec!["DEBUG attribute set".into()],
        });
        let page = html(&r, "debug.enclave.test", &r.reasons(), RefusalDetails::Full);
        assert!(page.contains("DEBUG mode"));
        assert!(page.contains("<code>debug_enclave</code>"));
        // Every code has a specific hint, not the fallback.
        for code in RefusalCode::ALL {
            assert!(
                !hint(code.as_str()).starts_with("The proxy's log"),
                "{code}"
            );
        }
    }
}
