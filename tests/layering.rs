//! The library's layers only point down, and no two files import each other through any
//! chain: read from the source's `use crate::…`/`use super::…` declarations and
//! `crate::…` paths. The layers, lowest first, are those of the README's Layout.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each top-level module's layer: a module may use modules of lower layers only.
const LAYERS: &[(&str, usize)] = &[
    ("util", 0),
    ("plot", 1),
    ("ops", 1),
    ("act", 2),
    ("model", 3),
    ("data", 3),
    ("export", 4),
    ("eval", 5),
    ("detect", 6),
    ("train", 6),
    ("experiment", 7),
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// `src/a/b.rs` and `src/a/b/mod.rs` are module `a::b`; `src/lib.rs` is the root "".
fn module_of(file: &Path) -> String {
    let rel = file.strip_prefix(src()).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
        parts.pop();
    }
    parts.join("::")
}

fn library_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                // The command line is the binary's, above every layer.
                if path.file_name().is_some_and(|n| n != "cli") {
                    walk(&path, out);
                }
            } else if path.extension().is_some_and(|e| e == "rs")
                && path.file_name().is_some_and(|n| n != "main.rs")
            {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&src(), &mut files);
    files.sort();
    files
}

/// Source text without comments and string literals, which may mention paths.
fn code_only(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '"' => {
                let mut escaped = false;
                for c in chars.by_ref() {
                    if escaped {
                        escaped = false;
                    } else if c == '\\' {
                        escaped = true;
                    } else if c == '"' {
                        break;
                    }
                }
                out.push_str("\"\"");
            }
            _ => out.push(c),
        }
    }
    out
}

/// Every path a `use` tree names, braces expanded: `super::{a::B, c}` gives `super::a::B`
/// and `super::c`.
fn expand_use(tree: &str) -> Vec<String> {
    let tree: String = tree.chars().filter(|c| !c.is_whitespace()).collect();
    match tree.find('{') {
        None => vec![tree],
        Some(open) => {
            let prefix = &tree[..open];
            let inner = &tree[open + 1..tree.rfind('}').unwrap()];
            let mut parts = Vec::new();
            let (mut depth, mut start) = (0, 0);
            for (i, c) in inner.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        parts.push(&inner[start..i]);
                        start = i + 1;
                    }
                    _ => {}
                }
            }
            parts.push(&inner[start..]);
            parts
                .into_iter()
                .filter(|p| !p.is_empty())
                .flat_map(|p| expand_use(&format!("{prefix}{p}")))
                .collect()
        }
    }
}

/// The paths a file refers to: its `use` declarations and inline `crate::` paths, with
/// `super::` and `self::` made absolute.
fn referenced_paths(file: &Path, module: &str) -> Vec<String> {
    let code = code_only(&std::fs::read_to_string(file).unwrap());
    let mut paths = Vec::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("use ") {
        let before = rest[..at].chars().last();
        rest = &rest[at + 4..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let end = rest.find(';').unwrap_or(rest.len());
        paths.extend(expand_use(&rest[..end]));
        rest = &rest[end..];
    }
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at..];
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(rest.len());
        paths.push(rest[..end].trim_end_matches(':').to_string());
        rest = &rest[end..];
    }
    // A file's `super` is its module's parent; `mod.rs` files are their module.
    let parent: Vec<&str> = module.split("::").filter(|s| !s.is_empty()).collect();
    paths
        .into_iter()
        .filter_map(|path| {
            let segments: Vec<&str> = path.split("::").collect();
            let (base, tail): (Vec<&str>, &[&str]) = match segments[0] {
                "crate" => (vec![], &segments[1..]),
                "super" => {
                    let ups = segments.iter().take_while(|s| **s == "super").count();
                    (
                        parent[..parent.len().saturating_sub(ups)].to_vec(),
                        &segments[ups..],
                    )
                }
                "self" => (parent.clone(), &segments[1..]),
                _ => return None,
            };
            Some(
                base.into_iter()
                    .chain(tail.iter().copied())
                    .collect::<Vec<_>>()
                    .join("::"),
            )
        })
        .collect()
}

/// The module a path lands in: its longest prefix that is a module of the crate.
fn resolve(path: &str, modules: &BTreeSet<String>) -> Option<String> {
    let segments: Vec<&str> = path.split("::").collect();
    (1..=segments.len())
        .rev()
        .map(|n| segments[..n].join("::"))
        .find(|m| modules.contains(m))
}

fn layer(module: &str) -> Option<usize> {
    let top = module.split("::").next()?;
    LAYERS
        .iter()
        .find(|(name, _)| *name == top)
        .map(|(_, l)| *l)
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let files = library_files();
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(f)).collect();
    files
        .iter()
        .map(|file| {
            let module = module_of(file);
            let deps = referenced_paths(file, &module)
                .iter()
                .filter_map(|p| resolve(p, &modules))
                .filter(|dep| *dep != module && !dep.is_empty())
                .collect();
            (module, deps)
        })
        .collect()
}

#[test]
fn every_top_level_module_has_a_layer() {
    let missing: Vec<String> = graph()
        .keys()
        .filter(|m| !m.is_empty() && layer(m).is_none())
        .cloned()
        .collect();
    assert!(missing.is_empty(), "modules with no layer: {missing:?}");
}

#[test]
fn no_module_uses_one_of_its_own_or_a_higher_layer() {
    let mut violations = Vec::new();
    for (module, deps) in graph() {
        let (Some(own), Some(top)) = (layer(&module), module.split("::").next()) else {
            continue;
        };
        for dep in deps {
            let same_top = dep.split("::").next() == Some(top);
            if let Some(theirs) = layer(&dep) {
                if !same_top && theirs >= own {
                    violations.push(format!("{module} uses {dep}"));
                }
            }
        }
    }
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

#[test]
fn no_files_use_each_other_through_any_chain() {
    let graph = graph();
    // Depth-first search for a back edge; the cycle is the stack from its target.
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
        cycles: &mut Vec<String>,
    ) {
        if done.contains(node) {
            return;
        }
        if let Some(at) = stack.iter().position(|n| n == node) {
            cycles.push(format!("{} -> {node}", stack[at..].join(" -> ")));
            return;
        }
        stack.push(node.to_string());
        for dep in graph.get(node).into_iter().flatten() {
            visit(dep, graph, stack, done, cycles);
        }
        stack.pop();
        done.insert(node.to_string());
    }
    let (mut done, mut cycles) = (BTreeSet::new(), Vec::new());
    for node in graph.keys() {
        visit(node, &graph, &mut Vec::new(), &mut done, &mut cycles);
    }
    assert!(cycles.is_empty(), "{}", cycles.join("\n"));
}

#[test]
fn the_reader_finds_imports() {
    // The reader itself: a grouped `use` and an inline path are both seen.
    let graph = graph();
    let conv = &graph["model::blocks::conv"];
    assert!(
        conv.contains("model::layer") && conv.contains("ops::conv_bn_layer"),
        "{conv:?}"
    );
    assert!(graph["model::build"].contains("util::runtime"));
}
