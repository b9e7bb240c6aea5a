//! The CDK app's stage table, `infra/lib/generated/stages.json`, is what the code generates
//! from `Stage`: the bus rules (which event type wakes which function) and the paging rule
//! are declared from it, so a stage changed here and not there would be woken by nothing.

#![allow(clippy::disallowed_methods)]

use std::path::PathBuf;

const REGENERATE: &str = "OPX_WRITE_STAGES=1 cargo test -p opx-app --test stage_table";

#[test]
fn the_checked_in_stage_table_is_the_generated_one() {
    let generated = opx_app::ports::stage_table_json();
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../infra/lib/generated/stages.json");
    if std::env::var_os("OPX_WRITE_STAGES").is_some() {
        std::fs::write(&path, &generated)
            .unwrap_or_else(|error| panic!("cannot write {}: {error}", path.display()));
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == generated,
        "{} differs from the stages the code defines; regenerate it with\n  {REGENERATE}\n\
         and commit it (then run infra/scripts/check)",
        path.display()
    );
}
