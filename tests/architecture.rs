//! The house rules, read from the source: the pure core (`dcap/`, `appraise/`, `nitro/`,
//! `snp/`, `dstack/`, `cbor.rs`) does no I/O and reads no clock, and no module imports a layer
//! above its own.

use std::path::{Path, PathBuf};

/// The layers, top first. A module may import only its own layer and those below it.
const LAYERS: &[&[&str]] = &[
    &["cli"],
    &["admin"],
    &["proxy"],
    &["config"],
    &["source", "ca", "sim", "audit"],
    &["ratls", "metrics", "addr", "clock"],
    &["appraise"],
    &["dstack", "nitro", "snp"],
    &["dcap"],
    &["cbor"],
];

/// What the pure core must not name: runtimes, sockets, files, the clock.
const IMPURE: &[&str] = &[
    "tokio",
    "hyper",
    "std::net",
    "std::fs",
    "SystemTime",
    "Instant::now",
    "UnixTime::now",
    "std::env",
];

fn src() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`src/dcap/verify.rs` → `dcap`).
fn module_of(file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src()).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    Some(first.trim_end_matches(".rs").to_owned())
}

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// Code lines only: comments and doc comments may mention anything.
fn code(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim_start()))
        .filter(|(_, l)| !l.starts_with("//"))
}

#[test]
fn the_pure_core_does_no_io_and_reads_no_clock() {
    let mut files = Vec::new();
    rust_files(&src().join("dcap"), &mut files);
    rust_files(&src().join("appraise"), &mut files);
    rust_files(&src().join("dstack"), &mut files);
    rust_files(&src().join("nitro"), &mut files);
    files.push(src().join("cbor.rs"));
    rust_files(&src().join("snp"), &mut files);
    assert!(files.len() > 10, "the core was not found");
    let mut found = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read");
        for (n, line) in code(&text) {
            for word in IMPURE {
                if line.contains(word) {
                    found.push(format!("{}:{n}: {word}: {line}", file.display()));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "impure code in the core:\n{}",
        found.join("\n")
    );
}

#[test]
fn no_module_imports_a_layer_above_its_own() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut found = Vec::new();
    for file in &files {
        let Some(module) = module_of(file) else {
            continue;
        };
        // lib.rs and main.rs are the facade and the binary: above everything.
        let Some(own) = layer_of(&module) else {
            assert!(
                ["lib", "main"].contains(&module.as_str()),
                "{module} is in no layer: add it to LAYERS"
            );
            continue;
        };
        let text = std::fs::read_to_string(file).expect("read");
        for (n, line) in code(&text) {
            for (at, _) in line.match_indices("crate::") {
                let rest = &line[at + "crate::".len()..];
                let target: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if let Some(theirs) = layer_of(&target) {
                    if theirs < own {
                        found.push(format!(
                            "{}:{n}: {module} imports {target} (a layer above): {line}",
                            file.display()
                        ));
                    }
                }
            }
        }
    }
    assert!(found.is_empty(), "arrows running up:\n{}", found.join("\n"));
}

#[test]
fn no_source_file_is_above_600_lines() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let long: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let n = std::fs::read_to_string(f).expect("read").lines().count();
            (n > 600).then(|| format!("{}: {n} lines", f.display()))
        })
        .collect();
    assert!(long.is_empty(), "split these files:\n{}", long.join("\n"));
}
