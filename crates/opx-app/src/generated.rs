//! The files the Rust code generates for the CDK app (`infra/lib/generated/*.json`): one
//! format for all of them, so the CDK app reads each the same way and a regenerated file
//! differs from the checked-in one only where the code changed.

use serde::Serialize;

/// A generated file: `{"generated_by": …, "<field>": rows}`, pretty-printed, keys sorted,
/// with a final newline. `generated_by` says which code writes it and how to regenerate it.
pub fn document<T: Serialize>(generated_by: &str, field: &str, rows: &T) -> String {
    let mut document = serde_json::Map::new();
    document.insert("generated_by".to_owned(), generated_by.into());
    document.insert(
        field.to_owned(),
        serde_json::to_value(rows).unwrap_or_default(),
    );
    let mut text = serde_json::to_string_pretty(&document).unwrap_or_default();
    text.push('\n');
    text
}
