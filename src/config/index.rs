//! The `[[enclave]]` entries as one lookup from a destination to the entry covering it:
//! exact hosts (names and IP literals) in a hash map by host then port, wildcards in a hash
//! map by their suffix then port. The most specific entry for a destination is found with
//! one lookup per label of its host, whatever the number of entries. Pure: built once per
//! configuration, no I/O.

use std::collections::HashMap;

use super::EnclaveConfig;
use crate::addr::{Authority, Host};

type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Which entry (its position in the configuration's list) covers a destination.
#[derive(Clone, Debug, Default)]
pub(crate) struct HostIndex {
    /// Exact patterns: host → port → entry. A host present at any port is named.
    exact: Map<Host, Map<u16, usize>>,
    /// Wildcards `*.suffix`: suffix → port → entry.
    wild: Map<Box<str>, Map<u16, usize>>,
    /// `connect_to` addresses: host → ports dialled.
    dialled: Map<Host, Vec<u16>>,
}

impl HostIndex {
    /// The index of `entries`. Two entries naming one pattern (which configuration
    /// validation refuses) resolve to the later, as a scan keeping the last best match would.
    pub(crate) fn new(entries: &[EnclaveConfig]) -> Self {
        let mut index = Self::default();
        for (i, e) in entries.iter().enumerate() {
            for h in &e.hosts {
                match (&h.host, h.wildcard) {
                    (Host::Name(suffix), true) => {
                        index
                            .wild
                            .entry(suffix.as_str().into())
                            .or_default()
                            .insert(h.port, i);
                    }
                    // A wildcard over an IP address covers nothing (parsing refuses one).
                    (Host::Ip(_), true) => {}
                    (host, false) => {
                        index
                            .exact
                            .entry(host.clone())
                            .or_default()
                            .insert(h.port, i);
                    }
                }
            }
            if let Some(c) = &e.connect_to {
                index
                    .dialled
                    .entry(c.host.clone())
                    .or_default()
                    .push(c.port);
            }
        }
        index
    }

    /// The most specific entry covering `dest`: its exact host and port, else the wildcard
    /// with the longest suffix at its port.
    pub(crate) fn find(&self, dest: &Authority) -> Option<usize> {
        if let Some(i) = self.exact.get(&dest.host).and_then(|p| p.get(&dest.port)) {
            return Some(*i);
        }
        let Host::Name(name) = &dest.host else {
            return None;
        };
        suffixes(name)
            .find_map(|s| self.wild.get(s).and_then(|p| p.get(&dest.port)))
            .copied()
    }

    /// True if an entry names `host` at some port (exactly or by a wildcard).
    pub(crate) fn names_host(&self, host: &Host) -> bool {
        if self.exact.contains_key(host) {
            return true;
        }
        match host {
            Host::Name(name) => suffixes(name).any(|s| self.wild.contains_key(s)),
            Host::Ip(_) => false,
        }
    }

    /// True if `host:port` is where an enclave entry lives: an IP literal an entry names (at
    /// any port), or an entry's `connect_to` address.
    pub(crate) fn is_enclave_address(&self, host: &Host, port: u16) -> bool {
        let literal = matches!(host, Host::Ip(_)) && self.exact.contains_key(host);
        literal || self.dialled.get(host).is_some_and(|p| p.contains(&port))
    }
}

/// The suffixes a wildcard may cover `name` by, longest first: `a.b.c` gives `b.c`, `c`
/// (a wildcard needs at least one label before its suffix).
fn suffixes(name: &str) -> impl Iterator<Item = &str> {
    name.match_indices('.')
        .filter(|(at, _)| *at > 0)
        .filter_map(|(at, _)| name.get(at.saturating_add(1)..))
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::addr::HostPattern;
    use crate::appraise::policy::EnclavePolicy;
    use crate::ratls::BindingMode;

    fn entry(hosts: &[&str], connect_to: Option<&str>) -> EnclaveConfig {
        EnclaveConfig {
            hosts: hosts
                .iter()
                .map(|h| HostPattern::parse(h).expect("pattern"))
                .collect(),
            policy: EnclavePolicy::default(),
            binding: BindingMode::Auto,
            connect_to: connect_to.map(|c| Authority::parse_dial(c).expect("dial")),
            snp: None,
            nitro: None,
        }
    }

    fn dest(text: &str) -> Authority {
        Authority::parse(text, Some(443)).expect("authority")
    }

    /// The walk the index replaces: every pattern of every entry, the most specific match
    /// winning (the last of equals).
    fn scan(entries: &[EnclaveConfig], dest: &Authority) -> Option<usize> {
        entries
            .iter()
            .enumerate()
            .flat_map(|(i, e)| e.hosts.iter().map(move |h| (i, h)))
            .filter(|(_, h)| h.matches(dest))
            .max_by_key(|(_, h)| h.specificity())
            .map(|(i, _)| i)
    }

    fn scan_names(entries: &[EnclaveConfig], host: &Host) -> bool {
        entries
            .iter()
            .flat_map(|e| e.hosts.iter())
            .any(|h| h.matches_host(host))
    }

    fn scan_address(entries: &[EnclaveConfig], host: &Host, port: u16) -> bool {
        entries.iter().any(|e| {
            let literal = matches!(host, Host::Ip(_))
                && e.hosts.iter().any(|h| !h.wildcard && h.host == *host);
            let dialled = e
                .connect_to
                .as_ref()
                .is_some_and(|c| c.host == *host && c.port == port);
            literal || dialled
        })
    }

    #[test]
    fn the_most_specific_entry_wins() {
        let entries = [
            entry(&["*.example.com"], None),
            entry(&["*.apps.example.com", "*.apps.example.com:8443"], None),
            entry(
                &["kms.apps.example.com", "10.0.0.7:9443"],
                Some("10.0.0.9:443"),
            ),
        ];
        let index = HostIndex::new(&entries);
        for (d, want) in [
            ("kms.apps.example.com", Some(2)),
            ("x.kms.apps.example.com", Some(1)),
            ("other.apps.example.com", Some(1)),
            ("other.apps.example.com:8443", Some(1)),
            ("apps.example.com", Some(0)),
            ("example.com", None),
            ("kms.apps.example.com:8443", Some(1)),
            ("kms.apps.example.com:9443", None),
            ("10.0.0.7:9443", Some(2)),
            ("10.0.0.7", None),
            ("xexample.com", None),
        ] {
            assert_eq!(index.find(&dest(d)), want, "{d}");
            assert_eq!(index.find(&dest(d)), scan(&entries, &dest(d)), "{d}");
        }
        assert!(index.names_host(&dest("10.0.0.7").host));
        assert!(index.names_host(&dest("a.b.example.com").host));
        assert!(!index.names_host(&dest("example.com").host));
        assert!(index.is_enclave_address(&dest("10.0.0.7:1").host, 1));
        assert!(index.is_enclave_address(&dest("10.0.0.9").host, 443));
        assert!(!index.is_enclave_address(&dest("10.0.0.9").host, 444));
        assert!(!index.is_enclave_address(&dest("kms.apps.example.com").host, 443));
    }

    /// Host names over a few labels, so random entries and destinations overlap often.
    fn name() -> impl Strategy<Value = String> {
        proptest::collection::vec(prop::sample::select(vec!["a", "b", "c", "xa", "a-b"]), 1..5)
            .prop_map(|labels| labels.join("."))
    }

    fn host() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => name(),
            1 => prop::sample::select(vec!["10.0.0.1", "10.1", "[::1]", "[::ffff:10.0.0.1]", "127.0.0.1"])
                .prop_map(str::to_owned),
        ]
    }

    fn port() -> impl Strategy<Value = u16> {
        prop::sample::select(vec![443u16, 8443, 9000])
    }

    fn pattern() -> impl Strategy<Value = String> {
        prop_oneof![
            (host(), port()).prop_map(|(h, p)| format!("{h}:{p}")),
            (name(), port()).prop_map(|(h, p)| format!("*.{h}:{p}")),
        ]
    }

    fn entries() -> impl Strategy<Value = Vec<EnclaveConfig>> {
        proptest::collection::vec(
            (
                proptest::collection::vec(pattern(), 1..4),
                proptest::option::of((host(), port())),
            ),
            0..12,
        )
        .prop_map(|raw| {
            raw.iter()
                .map(|(hosts, dial)| {
                    let hosts: Vec<&str> = hosts.iter().map(String::as_str).collect();
                    let dial = dial.as_ref().map(|(h, p)| format!("{h}:{p}"));
                    entry(&hosts, dial.as_deref())
                })
                .collect()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn the_index_and_a_scan_choose_the_same_entry(
            entries in entries(),
            dests in proptest::collection::vec((host(), port()), 1..8),
        ) {
            let index = HostIndex::new(&entries);
            for (h, p) in &dests {
                let d = dest(&format!("{h}:{p}"));
                prop_assert_eq!(index.find(&d), scan(&entries, &d), "{}", d);
                prop_assert_eq!(index.names_host(&d.host), scan_names(&entries, &d.host), "{}", d);
                prop_assert_eq!(
                    index.is_enclave_address(&d.host, d.port),
                    scan_address(&entries, &d.host, d.port),
                    "{}", d
                );
            }
        }
    }
}
