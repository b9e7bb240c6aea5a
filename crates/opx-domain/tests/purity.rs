//! The domain crate must stay a pure function of its inputs. These tests fail when a
//! dependency or a source line that could read a clock, randomness, the environment or do
//! I/O creeps in. They complement the `disallowed-methods` list in the workspace
//! `clippy.toml`, which catches the calls themselves.

// This test inspects the crate from outside: it runs `cargo metadata` and reads the
// sources, which the domain itself may never do.
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// Every crate the domain may depend on, directly or transitively (normal dependencies
/// only). Adding one means reviewing it for clocks, randomness, environment and I/O.
const ALLOWED_CRATES: &[&str] = &[
    "opx-domain",
    // serialisation
    "serde",
    "serde_core",
    "serde_derive",
    "serde_json",
    "itoa",
    "ryu",
    "memchr",
    "zmij",
    // hashing
    "sha2",
    "digest",
    "block-buffer",
    "crypto-common",
    "generic-array",
    "typenum",
    "version_check",
    "cpufeatures",
    "libc",
    "cfg-if",
    // Constant-time comparison, pulled into `digest` by feature unification when a
    // workspace crate uses HMAC (the API's SigV4 check); no clock, randomness or I/O.
    "subtle",
    // errors
    "thiserror",
    "thiserror-impl",
    // rule versions
    "semver",
    // rule files (serde-saphyr and its parser)
    "serde-saphyr",
    "granit-parser",
    "annotate-snippets",
    "anstyle",
    "unicode-width",
    "encoding_rs",
    "encoding_rs_io",
    "base64",
    "nohash-hasher",
    "smallvec",
    "ahash",
    "arraydeque",
    "hashlink",
    "hashbrown",
    "foldhash",
    "num-traits",
    "autocfg",
    "simdutf8",
    "core_detect",
    "multiversion_no_op",
    "rustversion",
    "scopeguard",
    // proc-macro plumbing
    "proc-macro2",
    "quote",
    "syn",
    "unicode-ident",
];

/// Crates that must never appear, with the reason, so a failure explains itself.
const FORBIDDEN_CRATES: &[(&str, &str)] = &[
    ("tokio", "async runtime: the domain is synchronous"),
    ("rand", "randomness: ids are derived, never random"),
    ("getrandom", "randomness: ids are derived, never random"),
    ("uuid", "random ids: ids are derived with SHA-256"),
    ("chrono", "clock access: time enters as data (EpochMs)"),
    ("aws-config", "AWS SDK: only adapter crates talk to AWS"),
    (
        "aws-sdk-dynamodb",
        "AWS SDK: only adapter crates talk to AWS",
    ),
    (
        "aws-sdk-eventbridge",
        "AWS SDK: only adapter crates talk to AWS",
    ),
    ("rusqlite", "storage: only adapter crates do I/O"),
    ("hyper", "network I/O: only adapter crates do I/O"),
    ("reqwest", "network I/O: only adapter crates do I/O"),
    ("mio", "I/O event loop: only adapter crates do I/O"),
];

fn domain_dependency_closure() -> BTreeSet<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--manifest-path"])
        .arg(&manifest)
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("metadata is JSON");

    let mut names_by_id = BTreeMap::new();
    for package in metadata["packages"].as_array().expect("packages") {
        names_by_id.insert(
            package["id"].as_str().expect("id").to_string(),
            package["name"].as_str().expect("name").to_string(),
        );
    }
    let mut normal_deps: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for node in metadata["resolve"]["nodes"]
        .as_array()
        .expect("resolve nodes")
    {
        let id = node["id"].as_str().expect("node id").to_string();
        let deps = node["deps"]
            .as_array()
            .expect("deps")
            .iter()
            .filter(|dep| {
                dep["dep_kinds"]
                    .as_array()
                    .expect("dep_kinds")
                    .iter()
                    .any(|kind| kind["kind"].is_null() || kind["kind"].as_str() == Some("build"))
            })
            .map(|dep| dep["pkg"].as_str().expect("pkg").to_string())
            .collect();
        normal_deps.insert(id, deps);
    }
    let root = names_by_id
        .iter()
        .find(|(_, name)| name.as_str() == "opx-domain")
        .map(|(id, _)| id.clone())
        .expect("opx-domain is in the workspace");
    let mut seen = BTreeSet::new();
    let mut stack = vec![root];
    while let Some(id) = stack.pop() {
        if seen.insert(id.clone()) {
            stack.extend(normal_deps.get(&id).cloned().unwrap_or_default());
        }
    }
    seen.iter().map(|id| names_by_id[id].clone()).collect()
}

#[test]
fn dependency_closure_has_no_clock_randomness_or_io() {
    let closure = domain_dependency_closure();
    for (name, why) in FORBIDDEN_CRATES {
        assert!(
            !closure.contains(*name),
            "opx-domain depends on {name}: {why}"
        );
    }
    let unreviewed: Vec<&String> = closure
        .iter()
        .filter(|name| !ALLOWED_CRATES.contains(&name.as_str()))
        .collect();
    assert!(
        unreviewed.is_empty(),
        "opx-domain's dependency closure gained {unreviewed:?}; review each for clocks, \
         randomness, environment and I/O, then add it to ALLOWED_CRATES in this test"
    );
}

/// Source-level tokens that would make the domain impure. `clippy.toml` catches calls; this
/// catches imports and types too (a `use std::fs` is already a smell here).
const FORBIDDEN_TOKENS: &[(&str, &str)] = &[
    ("std::env", "environment access"),
    ("std::fs", "file I/O"),
    ("std::net", "network I/O"),
    ("std::process", "process control"),
    ("std::thread", "threads"),
    ("SystemTime", "clock access"),
    ("Instant::", "clock access"),
    ("HashMap", "random iteration order"),
    ("HashSet", "random iteration order"),
    ("f32", "floating point"),
    ("f64", "floating point"),
    ("tokio", "async runtime"),
    ("println!", "output: the domain returns values"),
    ("eprintln!", "output: the domain returns values"),
];

#[test]
fn sources_have_no_impure_tokens() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut offences = Vec::new();
    for entry in std::fs::read_dir(&src).expect("src is readable") {
        let path = entry.expect("dir entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("source is UTF-8");
        for (number, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            // serde's visitor trait names `f64` in `visit_f64`; parsers implement it to
            // refuse or pass on JSON numbers, never to compute or hash with them.
            if code.contains("fn visit_f64") {
                continue;
            }
            for (token, why) in FORBIDDEN_TOKENS {
                if contains_token(code, token) {
                    offences.push(format!(
                        "{}:{}: `{token}` ({why})",
                        path.display(),
                        number + 1
                    ));
                }
            }
        }
    }
    assert!(
        offences.is_empty(),
        "impure code in opx-domain:\n{}",
        offences.join("\n")
    );
}

/// Whether `token` occurs in `code` not as part of a longer identifier.
fn contains_token(code: &str, token: &str) -> bool {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    code.match_indices(token).any(|(at, _)| {
        let before = code[..at].chars().next_back();
        let after = code[at + token.len()..].chars().next();
        let token_starts_ident = token.chars().next().is_some_and(is_ident);
        let token_ends_ident = token.chars().next_back().is_some_and(is_ident);
        let glued_before = token_starts_ident && before.is_some_and(is_ident);
        let glued_after = token_ends_ident && after.is_some_and(is_ident);
        !glued_before && !glued_after
    })
}

#[test]
fn token_matching_ignores_longer_identifiers() {
    assert!(contains_token("let x: f64 = 1.0;", "f64"));
    assert!(!contains_token("let buf64 = 1;", "f64"));
    assert!(contains_token("use std::fs;", "std::fs"));
    assert!(!contains_token("use std::fsx;", "std::fs"));
}

#[test]
fn canonical_json_sorts_map_keys() {
    // If any crate in the workspace turns on serde_json's `preserve_order` feature, maps
    // serialise in insertion order and stored bytes would depend on how they were built.
    let value: serde_json::Value = serde_json::from_str(r#"{"b":1,"a":2}"#).expect("json");
    assert_eq!(
        serde_json::to_string(&value).expect("serialises"),
        r#"{"a":2,"b":1}"#
    );
}
