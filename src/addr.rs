//! Destinations: the one parser and printer of `host[:port]` (IPv6 in brackets), and the
//! `[[enclave]] hosts` patterns matched against them. Every destination the proxy sees (a
//! CONNECT authority, an absolute URI, a route upstream, `connect_to`) becomes an
//! [`Authority`] here, once; nothing else handles brackets or default ports.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

/// A host: a lower-case DNS name, or an IP address (IPv6 in canonical form).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Host {
    /// A DNS name, lower-cased (letters, digits, `-`, `.`, `_`).
    Name(String),
    /// An IP literal.
    Ip(IpAddr),
}

impl Host {
    /// Parses a bare host (no brackets, no port) into its normal form: one trailing dot
    /// removed, names lower-cased, every IPv4 spelling `inet_aton` accepts and every
    /// IPv4-mapped IPv6 address read as the IPv4 address it names. Non-ASCII and
    /// percent-encoded hosts are refused: the same name must never have two spellings.
    fn parse(host: &str, whole: &str) -> Result<Self, String> {
        if !host.is_ascii() || host.contains('%') {
            return Err(format!(
                "`{whole}`: non-ASCII or percent-encoded hosts are not accepted (use the A-label)"
            ));
        }
        let host = host.strip_suffix('.').unwrap_or(host);
        if host.is_empty() {
            return Err(format!("`{whole}`: missing host"));
        }
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(Self::Ip(canonical(ip)));
        }
        if let Some(v4) = inet_aton(host) {
            return Ok(Self::Ip(IpAddr::V4(v4)));
        }
        let valid_label = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        };
        if host.len() > 253 || !host.split('.').all(valid_label) {
            return Err(format!("`{whole}`: invalid host name"));
        }
        Ok(Self::Name(host.to_ascii_lowercase()))
    }
}

/// An IPv4-mapped IPv6 address is the IPv4 address it maps.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The IPv4 address `text` names under the rules of `inet_aton(3)`: one to four parts,
/// each decimal, octal (leading `0`) or hex (`0x`); the last part fills the remaining bytes
/// (`127.1`, `2130706433`, `0x7f000001`, `0177.0.0.1`). `None` if it is not such a spelling.
fn inet_aton(text: &str) -> Option<Ipv4Addr> {
    let parts: Vec<u32> = text
        .split('.')
        .map(|p| {
            let (digits, radix) =
                if let Some(hex) = p.strip_prefix("0x").or_else(|| p.strip_prefix("0X")) {
                    (hex, 16)
                } else if let Some(octal) = p.strip_prefix('0').filter(|r| !r.is_empty()) {
                    (octal, 8)
                } else {
                    (p, 10)
                };
            if digits.is_empty() && radix != 16 {
                return None;
            }
            if digits.is_empty() {
                // `0x` alone is 0 for inet_aton.
                return Some(0);
            }
            if !digits.chars().all(|c| c.is_digit(radix)) {
                return None;
            }
            u32::from_str_radix(digits, radix).ok()
        })
        .collect::<Option<_>>()?;
    let value = match parts.as_slice() {
        [a] => *a,
        [a, b] if *a <= 0xff && *b <= 0xff_ffff => (a << 24) | b,
        [a, b, c] if *a <= 0xff && *b <= 0xff && *c <= 0xffff => (a << 24) | (b << 16) | c,
        [a, b, c, d] if [a, b, c, d].iter().all(|x| **x <= 0xff) => {
            (a << 24) | (b << 16) | (c << 8) | d
        }
        _ => return None,
    };
    Some(Ipv4Addr::from(value))
}

impl fmt::Display for Host {
    /// The host without brackets (SNI, logs, refusal bodies).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Name(n) => f.write_str(n),
            Self::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// A destination: host and port.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Authority {
    /// The host.
    pub host: Host,
    /// The port (never 0).
    pub port: u16,
}

impl Authority {
    /// Parses `host[:port]` or `[v6][:port]`; `default_port` applies when none is given,
    /// and `None` makes the port required.
    pub fn parse(text: &str, default_port: Option<u16>) -> Result<Self, String> {
        let (host, port) = split(text)?;
        let port = match (port, default_port) {
            (Some(p), _) => parse_port(p, text)?,
            (None, Some(d)) => d,
            (None, None) => return Err(format!("`{text}`: a port is required (host:port)")),
        };
        Ok(Self {
            host: Host::parse(host, text)?,
            port,
        })
    }

    /// Like [`Authority::parse`] with a required port, also reading an unbracketed IPv6
    /// address before its port (`::1:8443`), as a socket connect does; for configuration
    /// written before brackets were required.
    pub fn parse_dial(text: &str) -> Result<Self, String> {
        Self::parse(text, None).or_else(|e| {
            let (host, port) = text.trim().rsplit_once(':').ok_or_else(|| e.clone())?;
            let ip = host.parse::<std::net::Ipv6Addr>().map_err(|_| e.clone())?;
            Ok(Self {
                host: Host::Ip(canonical(IpAddr::V6(ip))),
                port: parse_port(port, text)?,
            })
        })
    }

    /// `host` or `host:port` as it belongs in `Host` / `:authority`: the port is left out
    /// when it is the scheme's default.
    pub fn host_header(&self, default_port: u16) -> String {
        let host = match &self.host {
            Host::Ip(IpAddr::V6(ip)) => format!("[{ip}]"),
            other => other.to_string(),
        };
        if self.port == default_port {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

impl fmt::Display for Authority {
    /// `host:port`, IPv6 in brackets: what a socket connect takes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]:{}", self.port),
            other => write!(f, "{other}:{}", self.port),
        }
    }
}

/// Splits `host[:port]` / `[v6][:port]` into the bare host and the port text, if any.
fn split(text: &str) -> Result<(&str, Option<&str>), String> {
    let text = text.trim();
    if let Some(rest) = text.strip_prefix('[') {
        let (h, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("`{text}`: unclosed `[`"))?;
        if h.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("`{text}`: brackets hold an IPv6 address"));
        }
        return match after {
            "" => Ok((h, None)),
            p => Ok((
                h,
                Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| format!("`{text}`: expected `:port` after `]`"))?,
                ),
            )),
        };
    }
    if text.matches(':').count() > 1 {
        return Err(format!(
            "`{text}`: IPv6 addresses must be in brackets, like [::1]:443"
        ));
    }
    Ok(match text.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (text, None),
    })
}

fn parse_port(p: &str, text: &str) -> Result<u16, String> {
    p.parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("`{text}`: invalid port"))
}

/// A host pattern: `host[:port]` or `*.suffix[:port]`; the port defaults to 443.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HostPattern {
    /// The host, or for a wildcard the suffix after `*.` (always a name).
    pub host: Host,
    /// True for `*.suffix`: any name ending in `.suffix`.
    pub wildcard: bool,
    /// Port.
    pub port: u16,
}

impl HostPattern {
    /// Parses `host[:port]`, `*.suffix[:port]`, `[v6]:port`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (host, port) = split(text)?;
        let port = port.map_or(Ok(443), |p| parse_port(p, text))?;
        let (wildcard, host) = match host.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, host),
        };
        if host.contains('*') {
            return Err(format!(
                "`{text}`: a wildcard is only allowed as a leading `*.`"
            ));
        }
        let host = Host::parse(host, text)?;
        let numeric = |h: &Host| match h {
            Host::Ip(_) => true,
            Host::Name(n) => n.split('.').all(|l| l.chars().all(|c| c.is_ascii_digit())),
        };
        // An IP address is never matched by a wildcard: a numeric suffix would look like it
        // covers addresses and silently cover none.
        if wildcard && numeric(&host) {
            return Err(format!("`{text}`: a wildcard needs a DNS suffix"));
        }
        Ok(Self {
            host,
            wildcard,
            port,
        })
    }

    /// True if `dest` matches.
    pub fn matches(&self, dest: &Authority) -> bool {
        dest.port == self.port && self.matches_host(&dest.host)
    }

    /// True if `host` matches, at whatever port.
    pub fn matches_host(&self, host: &Host) -> bool {
        match (&self.host, host, self.wildcard) {
            (Host::Name(suffix), Host::Name(name), true) => name
                .strip_suffix(suffix.as_str())
                .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
            (_, _, true) => false,
            (pattern, host, false) => pattern == host,
        }
    }

    /// How specific a match by this pattern is: an exact host beats every wildcard, and a
    /// longer wildcard suffix beats a shorter one.
    pub fn specificity(&self) -> (bool, usize) {
        let suffix = match &self.host {
            Host::Name(n) => n.len(),
            Host::Ip(_) => 0,
        };
        (!self.wildcard, suffix)
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let star = if self.wildcard { "*." } else { "" };
        let dest = Authority {
            host: self.host.clone(),
            port: self.port,
        };
        write!(f, "{star}{dest}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(text: &str) -> Authority {
        Authority::parse(text, Some(443)).expect("parses")
    }

    /// A tunnel skips parsing a `Host` that equals its `host_header` byte for byte only
    /// because that spelling reads back as the tunnel's own authority: every kind of host
    /// and port, however it was first spelled.
    #[test]
    fn the_host_header_reads_back_as_its_authority() {
        for text in [
            "good.enclave.test",
            "GOOD.Enclave.Test.:443",
            "good.enclave.test:8443",
            "under_score-x.example:1",
            "127.0.0.1",
            "0x7f.1:443",
            "10.0.0.1:65535",
            "[::1]",
            "[::ffff:127.0.0.1]:8443",
            "[2001:DB8::1]:443",
        ] {
            let dest = a(text);
            let spelled = dest.host_header(443);
            assert_eq!(a(&spelled), dest, "{text} -> {spelled}");
        }
    }

    #[test]
    fn brackets_are_parsed_and_printed_in_one_place() {
        let v6 = a("[::1]:8443");
        assert_eq!(v6.host, Host::Ip("::1".parse().expect("ip")));
        assert_eq!(v6.to_string(), "[::1]:8443");
        assert_eq!(v6.host_header(443), "[::1]:8443");
        assert_eq!(a("[::1]").host_header(443), "[::1]");
        assert_eq!(a("[::1]").host.to_string(), "::1");
        assert_eq!(a("KMS.Example.com").to_string(), "kms.example.com:443");
        assert_eq!(a("kms.example.com:443").host_header(443), "kms.example.com");
    }

    #[test]
    fn every_spelling_of_a_destination_has_one_normal_form() {
        let loopback = a("127.0.0.1:443");
        for spelling in [
            "127.1:443",
            "2130706433:443",
            "0x7f000001:443",
            "0X7F000001:443",
            "0177.0.0.1:443",
            "0x7f.1:443",
            "127.0.1:443",
            "127.0.0.1.:443",
            "[::ffff:127.0.0.1]:443",
            "[::ffff:7f00:1]:443",
            "[0:0:0:0:0:ffff:7f00:1]:443",
        ] {
            assert_eq!(a(spelling), loopback, "{spelling}");
        }
        assert_eq!(a("Good.Enclave.Test.:443"), a("good.enclave.test:443"));
        assert_eq!(a("[0:0::1]"), a("[::1]"));
        assert_eq!(a("10.1"), a("10.0.0.1"));
        // Not IPv4 spellings: names (resolved later, if ever).
        for name in ["1e100.net", "0x7g", "08.1", "256.256.256.256.256"] {
            assert!(matches!(a(name).host, Host::Name(_)), "{name}");
        }
    }

    #[test]
    fn non_ascii_percent_encoded_and_empty_labels_are_refused() {
        for bad in [
            "g%6fod.enclave.test:443",
            "bücher.example:443",
            "a..b:443",
            ".:443",
            "..:443",
            "good.enclave.test..:443",
        ] {
            let err = Authority::parse(bad, Some(443));
            assert!(err.is_err(), "{bad:?} parsed as {err:?}");
        }
    }

    #[test]
    fn a_dial_address_may_be_unbracketed_ipv6() {
        let d = Authority::parse_dial("::1:8443").expect("ok");
        assert_eq!(d.to_string(), "[::1]:8443");
        assert_eq!(Authority::parse_dial("[::1]:8443").expect("ok"), d);
        assert!(Authority::parse_dial("::1").is_err());
        assert!(Authority::parse_dial("host").is_err());
    }

    #[test]
    fn malformed_authorities_are_refused() {
        for bad in [
            "",
            ":443",
            "[::1",
            "[::1]x",
            "::1",
            "host:0",
            "host:99999",
            "host:x",
            "h st",
            "[a.b]:1",
            "*.x:443",
        ] {
            assert!(Authority::parse(bad, Some(443)).is_err(), "{bad:?}");
        }
        assert!(Authority::parse("host", None).is_err());
        assert_eq!(Authority::parse("host:8443", None).expect("ok").port, 8443);
    }

    #[test]
    fn host_patterns_match_exactly_or_by_suffix() {
        let exact = HostPattern::parse("KMS.example.com").expect("ok");
        assert!(exact.matches(&a("kms.example.com")));
        assert!(!exact.matches(&a("kms.example.com:8443")));
        let wild = HostPattern::parse("*.enclave.example.com:8443").expect("ok");
        assert!(wild.matches(&a("a.enclave.example.com:8443")));
        assert!(!wild.matches(&a("enclave.example.com:8443")));
        assert!(!wild.matches(&a("xenclave.example.com:8443")));
        assert!(wild.matches(&a("a.b.enclave.example.com:8443")));
        for bad in [
            "",
            "a*.b",
            "a.*.com",
            "*.[::1]",
            "*.0.1",
            "*.10.0.0.1",
            "*.1.2.3.4.5",
            "host:0",
            "host:99999",
            "::1",
            "[::1",
            "ho st",
        ] {
            assert!(HostPattern::parse(bad).is_err(), "{bad:?}");
        }
        let v6 = HostPattern::parse("[::1]:9443").expect("ok");
        assert!(v6.matches(&a("[0:0::1]:9443")));
    }
}
