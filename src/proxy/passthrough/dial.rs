//! Plain TCP connections to non-enclave destinations (`unmatched = "passthrough"`): the
//! name is resolved once, every address is checked against what passthrough must never
//! reach, and only a checked one is dialled.

use std::net::{IpAddr, SocketAddr};

use tokio::net::TcpStream;

use crate::addr::{Authority, Host};
use crate::appraise::refusal::RefusalCode;
use crate::proxy::refusal::ProxyRefusal;
use crate::proxy::state::{Generation, Proxy};
use crate::proxy::upstream::pool::UpstreamOpen;

/// Whether `ip` is one the default configuration never lets passthrough reach.
fn is_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback() || v4.is_link_local() || v4.is_multicast() || v4.is_broadcast()
        }
        IpAddr::V6(v6) => v6.is_loopback() || v6.is_multicast() || v6.is_unicast_link_local(),
    }
}

/// Whether `ip` is unspecified: `0.0.0.0/8` ("this host on this network", RFC 1122) or `::`.
/// Linux connects `0.0.0.0` (and `::`) to this host, on whatever local address a listener
/// has, so such a destination is refused whatever `allow_local_destinations` says: it is
/// never needed (name `127.0.0.1`), and reading it as loopback would still miss listeners on
/// other local addresses and depend on the kernel. (IPv4-mapped forms arrive as IPv4.)
fn is_unspecified(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.octets()[0] == 0,
        IpAddr::V6(v6) => v6.is_unspecified(),
    }
}

/// Why `addr` (one address `dest` resolved to) may not be reached by passthrough, if so.
fn forbidden(
    proxy: &Proxy,
    g: &Generation,
    dest: &Authority,
    addr: SocketAddr,
) -> Option<ProxyRefusal> {
    let ip = match addr.ip() {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    if is_unspecified(ip) {
        return Some(ProxyRefusal::Destination(
            RefusalCode::LocalDestinationDenied,
            format!("{dest} is an unspecified address (this host): never a destination"),
        ));
    }
    if g.is_enclave_address(&Host::Ip(ip), addr.port()) {
        return Some(ProxyRefusal::Destination(
            RefusalCode::EnclaveAddressNotAttested,
            format!(
                "{dest} is an address of an enclave entry: it is reached only by name, attested"
            ),
        ));
    }
    // The proxy's own listeners are never a destination: a request looping back to the
    // admin listener would carry the admin's own Host.
    let own = proxy
        .own_addrs()
        .into_iter()
        .any(|o| o.port() == addr.port() && (o.ip() == ip || o.ip().is_unspecified()));
    if own || (is_local(ip) && !g.config.allow_local_destinations) {
        return Some(ProxyRefusal::Destination(
            RefusalCode::LocalDestinationDenied,
            format!("{dest} is a local destination (loopback, link-local, unspecified, multicast or the proxy itself)"),
        ));
    }
    None
}

/// A plain TCP connection to a non-enclave destination, within the connect timeout: the
/// name is resolved once, every address is checked, and only a checked one is dialled.
pub(crate) async fn dial_plain(
    proxy: &Proxy,
    g: &Generation,
    dest: &Authority,
) -> Result<(TcpStream, UpstreamOpen), ProxyRefusal> {
    // A client decides how long a tunnel (or a plain exchange) lasts: a share, checked first.
    let held = g.pool.hold(dest)?;
    let permit = g.pool.upstream_permit(dest).await?;
    let open = UpstreamOpen::new(&proxy.metrics, permit).holding(held);
    let timeout = g.config.limits.connect_timeout;
    let attempt = async {
        if let Host::Name(name) = &dest.host {
            if g.is_enclave_address(&dest.host, dest.port) {
                return Err(ProxyRefusal::Destination(
                    RefusalCode::EnclaveAddressNotAttested,
                    format!(
                        "{name} is the address of an enclave entry: it is reached only attested"
                    ),
                ));
            }
        }
        let addrs: Vec<SocketAddr> = match &dest.host {
            Host::Ip(ip) => vec![SocketAddr::new(*ip, dest.port)],
            Host::Name(name) => tokio::net::lookup_host((name.as_str(), dest.port))
                .await
                .map_err(|e| ProxyRefusal::Unreachable(format!("cannot resolve {dest}: {e}")))?
                .collect(),
        };
        let mut refusal = None;
        let mut last_error = None;
        for addr in addrs {
            if let Some(r) = forbidden(proxy, g, dest, addr) {
                refusal.get_or_insert(r);
                continue;
            }
            match TcpStream::connect(addr).await {
                Ok(s) => return Ok(s),
                Err(e) => last_error = Some(e),
            }
        }
        Err(match (last_error, refusal) {
            (Some(e), _) => ProxyRefusal::Unreachable(format!("cannot connect to {dest}: {e}")),
            (None, Some(r)) => r,
            (None, None) => ProxyRefusal::Unreachable(format!("{dest} resolves to no address")),
        })
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(result) => result.map(|tcp| (tcp, open)),
        Err(_) => Err(ProxyRefusal::Timeout(format!(
            "no connection to {dest} within {}s",
            timeout.as_secs()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::Authority;

    #[test]
    fn every_spelling_of_an_unspecified_address_is_unspecified() {
        for spelling in [
            "0",
            "0x0",
            "00",
            "0.0",
            "0.0.0.0",
            "0.0.0.1",
            "0.255.255.255",
            "[::]",
            "[0:0:0:0:0:0:0:0]",
            "[::ffff:0.0.0.0]",
            "[::ffff:0:0]",
        ] {
            let dest = Authority::parse(&format!("{spelling}:80"), None).expect(spelling);
            let Host::Ip(ip) = dest.host else {
                panic!("{spelling} is an address");
            };
            assert!(is_unspecified(ip), "{spelling}");
        }
        for other in ["1.0.0.0", "127.0.0.1", "[::1]", "10.0.0.1"] {
            let dest = Authority::parse(&format!("{other}:80"), None).expect(other);
            let Host::Ip(ip) = dest.host else {
                panic!("{other} is an address");
            };
            assert!(!is_unspecified(ip), "{other}");
        }
    }
}
