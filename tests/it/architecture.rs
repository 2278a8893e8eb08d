//! Architecture checks anyone can run (`cargo test --test it architecture`), parsing the
//! library's sources with `syn`:
//! - no import cycle among the top-level modules of `src/`, nor among the sibling
//!   modules of any module (`quant/`'s files, `quant/integer/`'s files...). A module's
//!   own file (`mod.rs`, `lib.rs`) is not a node: a parent declares and drives its
//!   children, and children may use the parent's shared types; names a parent only
//!   re-exports (`pub use report::Report`) are followed to the module defining them;
//! - no `#[allow(clippy::too_many_arguments)]` in `src/` (an options or state struct
//!   instead);
//! - no function over 100 lines in `src/quant/`.
//!
//! Every failure names the files, functions or cycle concerned.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use syn::visit::Visit;

/// The library's root (`src/main.rs` and `src/cli/` are the binary crate).
fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file of the library with its module path (`quant/integer/mod.rs` →
/// `["quant", "integer"]`).
fn library_files() -> Vec<(PathBuf, Vec<String>)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .expect("read src/")
            .map(|e| e.expect("dir entry").path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|e| e == "rs") {
                out.push(p);
            }
        }
    }
    let src = src_dir();
    let mut files = Vec::new();
    walk(&src, &mut files);
    files
        .into_iter()
        .filter_map(|p| {
            let rel = p.strip_prefix(&src).expect("under src").to_path_buf();
            let mut parts: Vec<String> = rel
                .iter()
                .map(|c| c.to_string_lossy().trim_end_matches(".rs").to_string())
                .collect();
            if parts[0] == "main" || parts[0] == "cli" {
                return None;
            }
            if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
                parts.pop();
            }
            Some((p, parts))
        })
        .collect()
}

fn parse(path: &Path) -> syn::File {
    let text = std::fs::read_to_string(path).expect("read source");
    syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Paths a file names: `use` trees flattened, and every path in code, each with the
/// module (file module plus inline `mod` blocks) it appears in.
#[derive(Default)]
struct Paths {
    /// Inline module nesting below the file's module.
    inline: Vec<String>,
    found: Vec<(Vec<String>, Vec<String>)>,
    /// `pub use` items: (inline module, name or alias, path).
    reexports: Vec<(Vec<String>, String, Vec<String>)>,
}

fn flatten_use(
    tree: &syn::UseTree,
    prefix: &mut Vec<String>,
    out: &mut Vec<(String, Vec<String>)>,
) {
    match tree {
        syn::UseTree::Path(p) => {
            prefix.push(p.ident.to_string());
            flatten_use(&p.tree, prefix, out);
            prefix.pop();
        }
        syn::UseTree::Name(n) => {
            let mut full = prefix.clone();
            let name = n.ident.to_string();
            if name != "self" {
                full.push(name.clone());
            }
            out.push((name, full));
        }
        syn::UseTree::Rename(r) => {
            let mut full = prefix.clone();
            full.push(r.ident.to_string());
            out.push((r.rename.to_string(), full));
        }
        syn::UseTree::Glob(_) => out.push(("*".into(), prefix.clone())),
        syn::UseTree::Group(g) => {
            for t in &g.items {
                flatten_use(t, prefix, out);
            }
        }
    }
}

impl<'ast> Visit<'ast> for Paths {
    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        self.inline.push(m.ident.to_string());
        syn::visit::visit_item_mod(self, m);
        self.inline.pop();
    }

    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        let mut flat = Vec::new();
        flatten_use(&u.tree, &mut Vec::new(), &mut flat);
        let public = !matches!(u.vis, syn::Visibility::Inherited);
        for (name, path) in flat {
            if public && name != "*" {
                self.reexports
                    .push((self.inline.clone(), name, path.clone()));
            }
            self.found.push((self.inline.clone(), path));
        }
    }

    fn visit_path(&mut self, p: &'ast syn::Path) {
        let segs: Vec<String> = p.segments.iter().map(|s| s.ident.to_string()).collect();
        if segs.len() > 1 {
            self.found.push((self.inline.clone(), segs));
        }
        syn::visit::visit_path(self, p);
    }
}

/// The module graph of the library: every module path, and what each module names.
struct Crate {
    modules: BTreeSet<Vec<String>>,
    /// (module, absolute path named), after following re-exports.
    uses: Vec<(Vec<String>, Vec<String>)>,
}

impl Crate {
    fn load() -> Self {
        let files = library_files();
        let modules: BTreeSet<Vec<String>> = files.iter().map(|(_, m)| m.clone()).collect();
        let mut raw = Vec::new();
        let mut reexports: BTreeMap<(Vec<String>, String), Vec<String>> = BTreeMap::new();
        for (path, module) in &files {
            let mut v = Paths::default();
            v.visit_file(&parse(path));
            for (inline, p) in v.found {
                let here = [module.clone(), inline].concat();
                raw.push((module.clone(), resolve(&modules, &here, &p)));
            }
            for (inline, name, p) in v.reexports {
                let here = [module.clone(), inline].concat();
                if let Some(abs) = resolve(&modules, &here, &p) {
                    reexports.insert((here, name), abs);
                }
            }
        }
        let uses = raw
            .into_iter()
            .filter_map(|(m, p)| Some((m, follow(&reexports, p?))))
            .collect();
        Crate { modules, uses }
    }

    /// Cycles among the children of `parent`, each as the list of its members.
    fn cycles_below(&self, parent: &[String]) -> Vec<Vec<String>> {
        let child = |p: &[String]| -> Option<String> {
            if p.len() <= parent.len() || !p.starts_with(parent) {
                return None;
            }
            let c = p[..=parent.len()].to_vec();
            self.modules.contains(&c).then(|| p[parent.len()].clone())
        };
        let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (from, to) in &self.uses {
            if let (Some(a), Some(b)) = (child(from), child(to))
                && a != b
            {
                edges.entry(a).or_default().insert(b);
            }
        }
        cycles(&edges)
    }
}

/// The absolute module path of `p` named in module `here`; `None` for paths outside
/// the crate (std, dependencies, local variables and types).
fn resolve(modules: &BTreeSet<Vec<String>>, here: &[String], p: &[String]) -> Option<Vec<String>> {
    let first = p.first()?;
    let (mut base, rest): (Vec<String>, &[String]) = match first.as_str() {
        "crate" => (Vec::new(), &p[1..]),
        "self" => (here.to_vec(), &p[1..]),
        "super" => {
            let mut base = here.to_vec();
            let mut i = 0;
            while p.get(i).is_some_and(|s| s == "super") {
                base.pop()?;
                i += 1;
            }
            (base, &p[i..])
        }
        _ => {
            // A child module of the current one (`fates::plan_fates` in `integer`).
            let mut c = here.to_vec();
            c.push(first.clone());
            if !modules.contains(&c) {
                return None;
            }
            (here.to_vec(), p)
        }
    };
    base.extend(rest.iter().cloned());
    Some(base)
}

/// Replaces a leading re-exported name by the path it re-exports, as long as one
/// applies (`crate::Error` → `crate::error::Error`, `quant::Report` → `quant::report::Report`).
fn follow(
    reexports: &BTreeMap<(Vec<String>, String), Vec<String>>,
    mut p: Vec<String>,
) -> Vec<String> {
    for _ in 0..8 {
        let hit = (0..p.len()).find_map(|i| {
            let key = (p[..i].to_vec(), p[i].clone());
            reexports.get(&key).map(|target| (i, target.clone()))
        });
        let Some((i, target)) = hit else { break };
        if target == p[..=i] {
            break;
        }
        let mut next = target;
        next.extend(p[i + 1..].iter().cloned());
        p = next;
    }
    p
}

/// The strongly connected components with more than one member (Tarjan).
fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct State<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.edges.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(lw);
            } else if s.on_stack.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                comp.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                s.out.push(comp);
            }
        }
    }
    let mut s = State {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out
}

/// Which module of a cycle names which: one line per edge, for the failure message.
fn describe(krate: &Crate, parent: &[String], cycle: &[String]) -> String {
    let mut lines = BTreeSet::new();
    for (from, to) in &krate.uses {
        let (Some(a), Some(b)) = (from.get(parent.len()), to.get(parent.len())) else {
            continue;
        };
        if from.starts_with(parent)
            && to.starts_with(parent)
            && a != b
            && cycle.contains(a)
            && cycle.contains(b)
        {
            lines.insert(format!("    {} uses {}", from.join("::"), to.join("::")));
        }
    }
    lines.into_iter().collect::<Vec<_>>().join("\n")
}

#[test]
fn no_import_cycles() {
    let krate = Crate::load();
    // The parse sees the crate's real dependencies (a checker that sees nothing passes).
    let uses = |a: &[&str], b: &[&str]| {
        krate.uses.iter().any(|(f, t)| {
            f.starts_with(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                && t.starts_with(&b.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        })
    };
    assert!(uses(&["quant", "integer"], &["quant", "scheme"]));
    assert!(uses(&["quant"], &["calib"]));
    assert!(uses(&["compare"], &["quant", "report"]) || uses(&["compare"], &["quant"]));
    let mut failures = Vec::new();
    for parent in &krate.modules {
        for cycle in krate.cycles_below(parent) {
            let at = if parent.is_empty() {
                "top-level modules".to_string()
            } else {
                format!("modules of {}", parent.join("::"))
            };
            failures.push(format!(
                "import cycle among the {at}: {}\n{}",
                cycle.join(" → "),
                describe(&krate, parent, &cycle)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The check itself finds a cycle (a checker that cannot fail proves nothing).
#[test]
fn cycle_detection_finds_a_cycle() {
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (a, b) in [
        ("fold", "report"),
        ("report", "integer"),
        ("integer", "qat"),
        ("qat", "integer"),
        ("rules", "fb"),
    ] {
        edges.entry(a.into()).or_default().insert(b.into());
    }
    assert_eq!(
        cycles(&edges),
        vec![vec!["integer".to_string(), "qat".to_string()]]
    );
    let modules: BTreeSet<Vec<String>> = [
        vec!["quant".to_string()],
        vec!["quant".into(), "integer".into()],
        vec!["quant".into(), "integer".into(), "fates".into()],
    ]
    .into_iter()
    .collect();
    let here = vec![
        "quant".to_string(),
        "integer".to_string(),
        "fates".to_string(),
    ];
    let p: Vec<String> = ["super", "super", "scheme", "Width"]
        .map(String::from)
        .to_vec();
    assert_eq!(
        resolve(&modules, &here, &p),
        Some(["quant", "scheme", "Width"].map(String::from).to_vec())
    );
}

/// Files allowed one `too_many_arguments` allow for now, each with its owner's reason.
/// The test fails when an entry is stale (the allow is gone): remove it then.
const TOO_MANY_ARGUMENTS_KNOWN: &[(&str, &str)] = &[(
    "interp/kernels/lstm.rs",
    "Gate::eval's dimensions; the interpreter kernels are being reshaped on their own branch",
)];

/// Every `#[allow(clippy::too_many_arguments)]` (or `expect`) in the library.
#[test]
fn no_too_many_arguments_allows() {
    let src = src_dir();
    let mut found = Vec::new();
    let mut known_seen = BTreeSet::new();
    for (path, _) in library_files() {
        let text = std::fs::read_to_string(&path).expect("read source");
        let rel = path
            .strip_prefix(&src)
            .expect("under src")
            .to_string_lossy()
            .to_string();
        for (i, line) in text.lines().enumerate() {
            if !line.contains("too_many_arguments") {
                continue;
            }
            if TOO_MANY_ARGUMENTS_KNOWN.iter().any(|(f, _)| *f == rel)
                && known_seen.insert(rel.clone())
            {
                continue;
            }
            found.push(format!("  src/{rel}:{}: {}", i + 1, line.trim()));
        }
    }
    for (f, _) in TOO_MANY_ARGUMENTS_KNOWN {
        if !known_seen.contains(*f) {
            found.push(format!("  src/{f}: listed in TOO_MANY_ARGUMENTS_KNOWN but has no allow any more: remove the entry"));
        }
    }
    assert!(
        found.is_empty(),
        "allow(too_many_arguments) found (group the parameters into an options or state struct):\n{}",
        found.join("\n")
    );
}

/// Functions and methods of a file with their line counts.
#[derive(Default)]
struct FnLengths {
    found: Vec<(String, usize, usize)>,
}

impl FnLengths {
    fn record(&mut self, name: &syn::Ident, block: &syn::Block) {
        use syn::spanned::Spanned;
        let span = block.span();
        let (start, end) = (span.start().line, span.end().line);
        self.found.push((name.to_string(), start, end + 1 - start));
    }
}

impl<'ast> Visit<'ast> for FnLengths {
    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        self.record(&f.sig.ident, &f.block);
        syn::visit::visit_item_fn(self, f);
    }
    fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
        self.record(&f.sig.ident, &f.block);
        syn::visit::visit_impl_item_fn(self, f);
    }
}

#[test]
fn no_long_functions_in_quant() {
    const MAX_LINES: usize = 100;
    let mut long = Vec::new();
    for (path, module) in library_files() {
        if module.first().map(String::as_str) != Some("quant") {
            continue;
        }
        let mut v = FnLengths::default();
        v.visit_file(&parse(&path));
        for (name, line, n) in v.found {
            if n > MAX_LINES {
                long.push(format!("  {}:{line}: fn {name}: {n} lines", path.display()));
            }
        }
    }
    assert!(
        long.is_empty(),
        "functions over {MAX_LINES} lines in src/quant/ (split them into named steps):\n{}",
        long.join("\n")
    );
}
