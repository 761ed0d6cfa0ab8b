//! The module map ARCHITECTURE.md draws, held by a test: which top-level module names which
//! (`crate::X` in code, comments left out), with no cycle between them, nothing below the
//! commands naming `cmd` or `cli`, and the loader, differ and planner never reaching the HTTP
//! client or the wire types, not even through another module (and the differ and planner no
//! error type at all: they cannot fail).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::util::repo;

/// Each top-level module of `src/` and the modules its code names.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let src = repo().join("src");
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if name == "main" || name == "lib" {
            continue;
        }
        let named = graph.entry(name.clone()).or_default();
        for file in rust_files(&path) {
            let text = std::fs::read_to_string(&file).unwrap();
            for module in crate_paths(&text) {
                if module != name {
                    named.insert(module);
                }
            }
        }
    }
    graph
}

fn rust_files(path: &Path) -> Vec<std::path::PathBuf> {
    if path.is_file() {
        return if path.extension().is_some_and(|e| e == "rs") { vec![path.to_owned()] } else { vec![] };
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).unwrap() {
        files.extend(rust_files(&entry.unwrap().path()));
    }
    files
}

/// The first segment of every `crate::` path in the code (`crate::a::b`, `crate::{a, b::c}`),
/// line comments (and so doc comments) left out.
fn crate_paths(text: &str) -> BTreeSet<String> {
    let code: String = text.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n");
    let mut found = BTreeSet::new();
    let ident = |s: &str| s.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect::<String>();
    for (at, _) in code.match_indices("crate::") {
        if code[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == '$') {
            continue; // `$crate::`, `my_crate::`
        }
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            found.extend(group.split(',').map(|p| ident(p.trim())).filter(|p| !p.is_empty()));
        } else {
            found.insert(ident(rest));
        }
    }
    found
}

/// Every module `from` reaches, directly or through others.
fn reach(graph: &BTreeMap<String, BTreeSet<String>>, from: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![from.to_string()];
    while let Some(m) = todo.pop() {
        for next in graph.get(&m).into_iter().flatten() {
            if seen.insert(next.clone()) {
                todo.push(next.clone());
            }
        }
    }
    seen
}

#[test]
fn the_module_map_has_no_cycle_and_no_import_upward() {
    let graph = imports();
    assert!(graph.contains_key("sync") && graph.contains_key("load"), "{graph:?}");
    let mut wrong = Vec::new();
    for module in graph.keys() {
        let reached = reach(&graph, module);
        if reached.contains(module) {
            wrong.push(format!("{module} is in an import cycle (it names {:?})", graph[module]));
        }
        if !["cmd", "cli"].contains(&module.as_str()) {
            for top in ["cmd", "cli"] {
                if reached.contains(top) {
                    wrong.push(format!("{module} reaches {top}, above it"));
                }
            }
        }
        if ["diff", "plan"].contains(&module.as_str()) && reached.contains("error") {
            wrong.push(format!("{module} reaches error: the differ and the planner cannot fail"));
        }
        if ["load", "diff", "plan", "model"].contains(&module.as_str()) {
            for http in ["client", "api", "execute", "emulator"] {
                if reached.contains(http) {
                    wrong.push(format!("{module} reaches {http}: the pure stages know no HTTP nor wire type"));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}\n(the module graph: {graph:#?})", wrong.join("\n"));
}

#[test]
fn the_checker_sees_grouped_paths_and_skips_comments() {
    let found = crate_paths("use crate::{a, b::c};\n// crate::cli\nlet x = crate::d::e(); let y = $crate::f;");
    assert_eq!(found, ["a", "b", "d"].iter().map(|s| s.to_string()).collect());
}

/// Usage errors are the command line's word: only `cli` builds one (settings resolved there),
/// and the commands below it report what the snapshot or plan does not hold as `NotHeld`.
#[test]
fn only_cli_builds_a_usage_error() {
    let src = repo().join("src");
    let mut wrong = Vec::new();
    for file in rust_files(&src) {
        let rel = file.strip_prefix(&src).unwrap().to_string_lossy().into_owned();
        if rel.starts_with("cli/") || rel == "error.rs" {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if code.contains("Error::Usage") || code.contains("Usage(") {
                wrong.push(format!("src/{rel}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    assert!(wrong.is_empty(), "usage errors built below cli:\n{}", wrong.join("\n"));
}
