//! The CDK app's route table, `infra/lib/generated/routes.json`, is what the code generates
//! from `opx_api::ROUTES`: the API Gateway resources, the IAM policies and the resource
//! policy are declared from it, so a route added here and not there would be unreachable.

#![allow(clippy::disallowed_methods)]

use std::path::PathBuf;

const REGENERATE: &str = "OPX_WRITE_ROUTES=1 cargo test -p opx-api --test route_table";

fn checked_in() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../infra/lib/generated/routes.json")
}

#[test]
fn the_checked_in_route_table_is_the_generated_one() {
    let generated = opx_api::routes::route_table_json();
    let path = checked_in();
    if std::env::var_os("OPX_WRITE_ROUTES").is_some() {
        std::fs::write(&path, &generated)
            .unwrap_or_else(|error| panic!("cannot write {}: {error}", path.display()));
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == generated,
        "{} differs from the routes the code defines; regenerate it with\n  {REGENERATE}\n\
         and commit it (then run infra/scripts/check)",
        path.display()
    );
}
