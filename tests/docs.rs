//! The documentation holds together: every relative link and `#anchor` in README.md and
//! `docs/*.md` resolves (anchors by GitHub's rules), the README's first lines carry the two
//! commands a newcomer starts with, every documented production build leaves the simulator
//! out, every key of the commented example configuration has its row in
//! `docs/configuration.md`, and every refusal code its row in `docs/refusal-codes.md`.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use ratls_proxy::appraise::refusal::RefusalCode;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// README.md and every `docs/*.md`.
fn markdown_files() -> Vec<PathBuf> {
    let mut files = vec![root().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .expect("docs/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

/// The lines outside fenced code blocks, with their 1-based numbers.
fn prose_lines(text: &str) -> Vec<(usize, &str)> {
    let mut fenced = false;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            out.push((i + 1, line));
        }
    }
    out
}

/// GitHub's heading anchor: lower-cased; letters, digits, `-`, `_` and spaces kept, every other
/// character dropped; each space turned into `-`.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors a file's headings make; a repeated heading gets `-1`, `-2`, … as on GitHub.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = BTreeSet::new();
    for (_, line) in prose_lines(text) {
        let hashes = line.chars().take_while(|c| *c == '#').count();
        if !(1..=6).contains(&hashes) || !line[hashes..].starts_with(' ') {
            continue;
        }
        let base = slug(&line[hashes..]);
        let n = seen.entry(base.clone()).or_insert(0);
        out.insert(if *n == 0 {
            base.clone()
        } else {
            format!("{base}-{n}")
        });
        *n += 1;
    }
    out
}

/// Inline code spans removed, so that `[x](y)` written as an example is not a link.
fn without_code_spans(line: &str) -> String {
    let mut out = String::new();
    let mut in_code = false;
    for c in line.chars() {
        if c == '`' {
            in_code = !in_code;
        } else if !in_code {
            out.push(c);
        }
    }
    out
}

/// Every `[text](target)` and `![alt](target)` target on a line.
fn link_targets(line: &str) -> Vec<String> {
    let line = without_code_spans(line);
    let mut out = Vec::new();
    let mut rest = line.as_str();
    while let Some(i) = rest.find("](") {
        let after = &rest[i + 2..];
        match after.find(')') {
            Some(end) => {
                out.push(after[..end].trim().to_owned());
                rest = &after[end..];
            }
            None => break,
        }
    }
    out
}

#[test]
fn slugs_follow_githubs_rules() {
    assert_eq!(
        slug("Security model and limits"),
        "security-model-and-limits"
    );
    assert_eq!(
        slug("`verify`: check an enclave from the shell"),
        "verify-check-an-enclave-from-the-shell"
    );
    assert_eq!(
        slug("Quote verification: `cargo bench --bench verify`"),
        "quote-verification-cargo-bench---bench-verify"
    );
    assert_eq!(
        slug("Issue 16, second part: changes measured one at a time (branch `perf16`)"),
        "issue-16-second-part-changes-measured-one-at-a-time-branch-perf16"
    );
    assert_eq!(
        slug("`[[enclave]]`: a TDX confidential VM"),
        "enclave-a-tdx-confidential-vm"
    );
    let twice = anchors("# A\n## Headline\n```\n## not a heading\n```\n### Headline\n");
    assert_eq!(
        twice.into_iter().collect::<Vec<_>>(),
        ["a", "headline", "headline-1"]
    );
    assert_eq!(
        link_targets("see [a](b.md#c), ![i](p.png) and `[x](not-a-link)` [d](#e)"),
        ["b.md#c", "p.png", "#e"]
    );
}

#[test]
fn every_relative_link_and_anchor_resolves() {
    let files = markdown_files();
    assert!(files.len() > 5, "README.md and docs/*.md: {files:?}");
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in &files {
        let text = read(file);
        let dir = file.parent().expect("a directory");
        for (n, line) in prose_lines(&text) {
            for target in link_targets(line) {
                if target.contains("://") || target.starts_with("mailto:") {
                    continue;
                }
                checked += 1;
                let (path, anchor) = match target.split_once('#') {
                    Some((p, a)) => (p, Some(a)),
                    None => (target.as_str(), None),
                };
                let linked = if path.is_empty() {
                    file.clone()
                } else {
                    dir.join(path)
                };
                let at = format!("{}:{n}: ({target})", file.display());
                if !linked.exists() {
                    broken.push(format!("{at}: no such file"));
                    continue;
                }
                if let Some(anchor) = anchor {
                    if linked.extension().is_none_or(|x| x != "md") {
                        broken.push(format!("{at}: an anchor into a file that is not markdown"));
                    } else if !anchors(&read(&linked)).contains(anchor) {
                        broken.push(format!("{at}: no heading makes #{anchor}"));
                    }
                }
            }
        }
    }
    assert!(
        checked > 50,
        "only {checked} links found: is the parser reading links?"
    );
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_readme_starts_with_the_two_commands() {
    let readme = read(&root().join("README.md"));
    let head: Vec<&str> = readme.lines().take(40).collect();
    for command in ["cargo run --release -- demo", "cargo test"] {
        assert!(
            head.iter().any(|l| l.trim_start().starts_with(command)),
            "README.md's first 40 lines do not start a line with `{command}`"
        );
    }
}

/// Every documented way to build the binary for production leaves the simulator out.
#[test]
fn documented_production_builds_leave_the_simulator_out() {
    const FLAGS: &str = "--no-default-features --features jemalloc";
    let mut files = vec![
        root().join("README.md"),
        root().join("docs/operating.md"),
        root().join("Dockerfile"),
    ];
    let mut deploy = vec![root().join("deploy")];
    while let Some(dir) = deploy.pop() {
        for entry in std::fs::read_dir(&dir).expect("deploy/") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                deploy.push(path);
            } else {
                files.push(path);
            }
        }
    }
    let mut builds = 0;
    let mut missing = Vec::new();
    for file in files {
        for (n, line) in read(&file).lines().enumerate() {
            let builds_it = (line.contains("cargo install") && line.contains("--path"))
                || line.contains("cargo build --release");
            if builds_it {
                builds += 1;
                if !line.contains(FLAGS) {
                    missing.push(format!("{}:{}: {line}", file.display(), n + 1));
                }
            }
        }
    }
    assert!(builds >= 4, "only {builds} production build lines found");
    assert!(
        missing.is_empty(),
        "production builds without `{FLAGS}`:\n{}",
        missing.join("\n")
    );
}

#[test]
fn every_key_of_the_example_configuration_is_in_the_reference() {
    let example = read(&root().join("config/ratls-proxy.toml"));
    let reference = read(&root().join("docs/configuration.md"));
    let mut keys = BTreeSet::new();
    for line in example.lines() {
        let line = line.trim_start().trim_start_matches('#').trim_start();
        if line.starts_with('[') {
            keys.insert(line.split_whitespace().next().unwrap_or(line).to_owned());
        } else if let Some((key, _)) = line.split_once(" = ") {
            if !key.is_empty()
                && key
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            {
                keys.insert(key.to_owned());
            }
        }
    }
    assert!(keys.len() > 40, "only {} keys read: {keys:?}", keys.len());
    let missing: Vec<&String> = keys
        .iter()
        .filter(|k| !reference.contains(&format!("`{k}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "keys of config/ratls-proxy.toml without a row in docs/configuration.md: {missing:?}"
    );
}

#[test]
fn every_refusal_code_is_in_the_reference() {
    let reference = read(&root().join("docs/refusal-codes.md"));
    let missing: Vec<&str> = RefusalCode::ALL
        .iter()
        .map(|c| c.as_str())
        .filter(|c| !reference.contains(&format!("`{c}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "refusal codes without a row in docs/refusal-codes.md: {missing:?}"
    );
}
