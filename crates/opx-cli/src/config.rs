//! The pipeline configuration: the built-in rules, or the rule files of `--rules DIR`.

use crate::UsageError;
use opx_app::pipeline::PipelineConfig;
use opx_domain::rules::{RuleFile, RuleSet, RULE_FILES_PER_SET_MAX};
use std::path::Path;

/// The built-in rule files: the domain crate's default rule set, compiled in so the binary
/// runs from any directory.
pub fn default_rule_files() -> Vec<RuleFile> {
    RuleSet::default_rule_files()
}

/// The configuration every stage decides with: the rules of `rules_dir` (its `*.yaml` and
/// `*.yml` files) or the built-in ones.
pub fn pipeline_config(rules_dir: Option<&Path>) -> anyhow::Result<PipelineConfig> {
    let files = match rules_dir {
        Some(dir) => read_rule_dir(dir)?,
        None => default_rule_files(),
    };
    PipelineConfig::with_rule_files(files).map_err(|error| UsageError(error.to_string()).into())
}

// Reading the rules directory is this command's job; the workspace lint against file
// access exists for the pure domain crate.
#[allow(clippy::disallowed_methods)]
fn read_rule_dir(dir: &Path) -> anyhow::Result<Vec<RuleFile>> {
    let entries = std::fs::read_dir(dir).map_err(|error| {
        UsageError(format!(
            "--rules {}: cannot read the directory: {error}",
            dir.display()
        ))
    })?;
    let mut paths = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|error| UsageError(format!("--rules {}: {error}", dir.display())))?
            .path();
        let is_yaml = path
            .extension()
            .and_then(|extension| extension.to_str())
            .is_some_and(|extension| extension == "yaml" || extension == "yml");
        if is_yaml && path.is_file() {
            paths.push(path);
        }
    }
    paths.sort();
    if paths.is_empty() {
        return Err(UsageError(format!(
            "--rules {}: no *.yaml rule files in this directory",
            dir.display()
        ))
        .into());
    }
    if paths.len() > RULE_FILES_PER_SET_MAX {
        return Err(UsageError(format!(
            "--rules {}: {} rule files, at most {RULE_FILES_PER_SET_MAX} are allowed",
            dir.display(),
            paths.len()
        ))
        .into());
    }
    let mut files = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(&path)
            .map_err(|error| UsageError(format!("{}: cannot read: {error}", path.display())))?;
        // Recorded as `rules/NAME`, like the built-in files, so a copy of the default
        // directory hashes like the built-in set wherever it lives.
        let name = path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        files.push(RuleFile {
            path: format!("rules/{name}"),
            text,
        });
    }
    Ok(files)
}
