//! The house rules, read from the source: the pure core (`dcap/`, `appraise/`, `nitro/`,
//! `snp/`, `dstack/`, `cbor.rs`, `bytes.rs`) does no I/O and reads no clock, and no module
//! imports a layer above its own.

use std::path::{Path, PathBuf};

/// The layers, top first. A module may import only its own layer and those below it.
const LAYERS: &[&[&str]] = &[
    &["cli"],
    &["admin"],
    &["proxy"],
    &["config"],
    &["source", "ca", "sim", "audit"],
    &["ratls", "metrics", "addr", "clock", "tcb_watch"],
    &["appraise"],
    &["dstack", "nitro", "snp"],
    &["dcap"],
    &["cbor"],
    &["bytes"],
];

/// The rooms of `proxy/`, top first: a room may import only its own floor and those below
/// it. Entry points on top; one request's record (`exchange`) above what it records
/// (verdicts re-judged, the generations); the upstream pool above the one error toward the
/// client (`refusal`), which the pool returns too; connections and leaves at the bottom.
const PROXY_ROOMS: &[&[&str]] = &[
    &["listen"],
    &["dispatch"],
    &["connect"],
    &["http", "passthrough"],
    &["websocket"],
    &["exchange"],
    &["judge"],
    &["state"],
    &["upstream"],
    &["refusal"],
    &["client"],
    &["target", "cores", "body"],
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
    files.push(src().join("bytes.rs"));
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

fn proxy_floor_of(room: &str) -> Option<usize> {
    PROXY_ROOMS.iter().position(|f| f.contains(&room))
}

/// The rooms of `proxy/` a code line names: `crate::proxy::room` and `super::…` paths
/// resolved from the file's own module path (`["http", "relay"]`).
fn proxy_rooms_named(line: &str, module: &[String]) -> Vec<String> {
    let word = |rest: &str| -> String {
        rest.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut named = Vec::new();
    for (at, _) in line.match_indices("crate::proxy::") {
        named.push(word(&line[at + "crate::proxy::".len()..]));
    }
    let mut from = 0;
    while let Some(at) = line[from..].find("super::") {
        let start = from + at;
        // Only the first `super::` of a run: `super::super::x` is one path.
        let preceded = line[..start].ends_with("super::");
        let mut rest = &line[start..];
        let mut ups = 0;
        while let Some(r) = rest.strip_prefix("super::") {
            rest = r;
            ups += 1;
        }
        from = start + "super::".len();
        if preceded {
            continue;
        }
        let mut path: Vec<String> = module[..module.len().saturating_sub(ups)].to_vec();
        path.push(word(rest));
        named.push(path[0].clone());
    }
    named
}

#[test]
fn no_room_of_the_proxy_imports_a_room_above_its_own() {
    let proxy = src().join("proxy");
    let mut files = Vec::new();
    rust_files(&proxy, &mut files);
    assert!(files.len() > 20, "proxy/ was not found");
    let mut found = Vec::new();
    for file in &files {
        let rel = file.strip_prefix(&proxy).expect("under proxy/");
        let mut module: Vec<String> = rel
            .components()
            .map(|c| {
                c.as_os_str()
                    .to_string_lossy()
                    .trim_end_matches(".rs")
                    .to_owned()
            })
            .collect();
        if module.last().is_some_and(|m| m == "mod") {
            module.pop();
        }
        // proxy/mod.rs is the folder's face: it names every room.
        let Some(own) = module.first().cloned() else {
            continue;
        };
        let own_floor = proxy_floor_of(&own)
            .unwrap_or_else(|| panic!("proxy/{own} is in no room: add it to PROXY_ROOMS"));
        let text = std::fs::read_to_string(file).expect("read");
        // A file's inline unit tests (`mod tests { use super::*; }`) are not its imports.
        let lines = code(&text).take_while(|(_, l)| !l.starts_with("#[cfg(test)]"));
        for (n, line) in lines {
            for room in proxy_rooms_named(line, &module) {
                if room == own {
                    continue;
                }
                match proxy_floor_of(&room) {
                    Some(theirs) if theirs < own_floor => found.push(format!(
                        "{}:{n}: {own} imports {room} (a room above): {line}",
                        file.display()
                    )),
                    Some(_) => {}
                    // Only rooms are named across rooms: not the folder's face.
                    None => found.push(format!(
                        "{}:{n}: {own} names proxy::{room}, which is no room: {line}",
                        file.display()
                    )),
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "arrows running up in proxy/:\n{}",
        found.join("\n")
    );
}

#[test]
fn every_room_of_the_proxy_is_on_a_floor() {
    let mut rooms: Vec<String> = std::fs::read_dir(src().join("proxy"))
        .expect("proxy/")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n != "mod.rs")
        .map(|n| n.trim_end_matches(".rs").to_owned())
        .collect();
    rooms.sort();
    let missing: Vec<&String> = rooms
        .iter()
        .filter(|r| proxy_floor_of(r).is_none())
        .collect();
    assert!(missing.is_empty(), "rooms on no floor: {missing:?}");
    let listed = PROXY_ROOMS.iter().map(|f| f.len()).sum::<usize>();
    assert_eq!(
        listed,
        rooms.len(),
        "a floor names a room that is gone: {rooms:?}"
    );
}
