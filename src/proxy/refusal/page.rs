//! The refusal as a page a person reads in a browser: the host, the refusal code, the
//! reasons (as `refusal_details` allows) and what the operator can change. Self-contained
//! (inline style, no script, no external resource) and every interpolated value escaped:
//! reasons quote what the enclave presented, which is attacker-controlled text.

use std::fmt::Write as _;

use super::ProxyRefusal;
use crate::appraise::refusal::RefusalCode;
use crate::config::RefusalDetails;

/// `&`, `<`, `>`, `"` and `'` as entities: safe in text and in quoted attributes alike.
pub(crate) fn escape(s: &str) -> String {
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

/// What the operator (or the enclave's owner) can change: the code's own hint, the
/// upstream's for a destination that could not be reached, else where to look.
fn hint(r: &ProxyRefusal) -> &'static str {
    match r {
        ProxyRefusal::Attestation(refusal) => refusal.code.hint(),
        ProxyRefusal::Destination(code, _) => code.hint(),
        ProxyRefusal::Unreachable(_) | ProxyRefusal::Timeout(_) | ProxyRefusal::Capacity(_) => {
            RefusalCode::UpstreamCapacity.hint()
        }
        ProxyRefusal::DestinationDenied(_)
        | ProxyRefusal::RequestDenied(_)
        | ProxyRefusal::BadRequest(_)
        | ProxyRefusal::Internal(_)
        | ProxyRefusal::MethodNotAllowed(_)
        | ProxyRefusal::Misdirected(_) => GENERIC_HINT,
    }
}

/// The hint of a refusal no code names.
const GENERIC_HINT: &str = "The proxy's log records this refusal with its reasons; the operator can change the policy in the proxy's configuration.";

/// The whole page.
pub(crate) fn html(
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
        hint = escape(hint(r)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::appraise::refusal::Refusal;

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
            assert_ne!(code.hint(), GENERIC_HINT, "{code}");
        }
        // A destination that could not be reached gets the upstream's hint.
        let down = ProxyRefusal::Unreachable("connection refused".into());
        assert_eq!(hint(&down), RefusalCode::UpstreamCapacity.hint());
    }
}
