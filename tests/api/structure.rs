//! The code's structure, checked: modules depend on each other in one direction only. A
//! file that uses another (by `crate::` path or `super::`) must not be used by it, directly
//! or through others, in either crate.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `root`, by module path (`a::b` for `a/b.rs` or `a/b/mod.rs`).
fn modules(root: &Path) -> BTreeMap<String, String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut paths = Vec::new();
    walk(root, &mut paths);
    paths
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(root).unwrap().with_extension("");
            let mut name = rel.to_string_lossy().replace('/', "::");
            if let Some(parent) = name.strip_suffix("::mod") {
                name = parent.to_string();
            }
            // Unit tests may reach anywhere; only the code itself counts.
            let text = std::fs::read_to_string(&p).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap().to_string();
            (name, code)
        })
        .collect()
}

/// The modules each module uses: `crate::a::b` (longest known prefix) and `super::`.
fn edges(modules: &BTreeMap<String, String>) -> BTreeMap<String, BTreeSet<String>> {
    let mut edges = BTreeMap::new();
    for (name, code) in modules {
        let mut uses = BTreeSet::new();
        let mut paths: Vec<String> = Vec::new();
        for (i, _) in code.match_indices("crate::") {
            let rest = &code[i + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                let group = &group[..group.find('}').unwrap_or(group.len())];
                paths.extend(group.split(',').map(|s| s.trim().to_string()));
            } else {
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                    .unwrap_or(rest.len());
                paths.push(rest[..end].to_string());
            }
        }
        for path in paths {
            let parts: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
            for n in (1..=parts.len()).rev() {
                let candidate = parts[..n].join("::");
                if modules.contains_key(&candidate) {
                    uses.insert(candidate);
                    break;
                }
            }
        }
        if code.contains("super::") {
            if let Some((parent, _)) = name.rsplit_once("::") {
                uses.insert(parent.to_string());
            }
        }
        uses.remove(name);
        edges.insert(name.clone(), uses);
    }
    edges
}

/// A cycle, if there is one.
fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = stack.iter().position(|n| n == node) {
            let mut cycle = stack[i..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_string());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, stack, done) {
                return Some(cycle);
            }
        }
        stack.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    edges
        .keys()
        .find_map(|n| visit(n, edges, &mut Vec::new(), &mut done))
}

#[test]
fn no_module_of_either_crate_depends_on_itself_through_others() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for src in ["src", "actors/src"] {
        let modules = modules(&root.join(src));
        assert!(modules.len() > 10, "{src}: found the modules");
        let edges = edges(&modules);
        assert!(
            edges.values().map(BTreeSet::len).sum::<usize>() > 20,
            "{src}: found the dependencies"
        );
        if let Some(cycle) = find_cycle(&edges) {
            panic!(
                "{src}: modules depend on each other: {}",
                cycle.join(" -> ")
            );
        }
    }
}

#[test]
fn a_cycle_is_found_when_there_is_one() {
    let mut edges = BTreeMap::new();
    edges.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
    edges.insert("b".to_string(), BTreeSet::from(["c".to_string()]));
    edges.insert("c".to_string(), BTreeSet::from(["a".to_string()]));
    assert_eq!(find_cycle(&edges).unwrap(), vec!["a", "b", "c", "a"]);
    edges.get_mut("c").unwrap().clear();
    assert!(find_cycle(&edges).is_none());
}
