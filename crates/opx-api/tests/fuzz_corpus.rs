//! Replays the `api_bodies` fuzz corpus (fuzz/corpus/api_bodies) with the fuzz target's
//! properties, as an ordinary test: a crash found once stays fixed.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use opx_api::auth::RoleMap;
use opx_api::cursor;
use opx_api::human::{AssigneeRequest, NoteRequest, SeverityRequest, TransitionRequest};
use opx_api::sigv4::LocalCredentials;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::path::Path;

fn round_trips<T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug>(body: &[u8]) {
    if let Ok(value) = serde_json::from_slice::<T>(body) {
        let bytes = serde_json::to_vec(&value).unwrap();
        let again: T = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(again, value);
    }
}

#[test]
fn every_api_body_in_the_fuzz_corpus_parses_or_is_refused() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/api_bodies");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        let Some((&selector, body)) = data.split_first() else {
            continue;
        };
        seen += 1;
        match selector % 7 {
            0 => round_trips::<TransitionRequest>(body),
            1 => round_trips::<NoteRequest>(body),
            2 => round_trips::<AssigneeRequest>(body),
            3 => round_trips::<SeverityRequest>(body),
            4 => {
                let _ = LocalCredentials::parse(body);
            }
            5 => {
                if let Ok(text) = std::str::from_utf8(body) {
                    let _ = RoleMap::from_json(text);
                }
            }
            _ => {
                if let Ok(text) = std::str::from_utf8(body) {
                    let scope = cursor::scope("/incidents", &[Some("OPEN"), None, None]);
                    let _ = cursor::decode(text, scope);
                }
            }
        }
    }
    assert!(seen > 100, "the corpus was found ({seen} inputs)");
}
