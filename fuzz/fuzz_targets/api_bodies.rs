//! Everything the incident API parses from a caller before it acts: the four command
//! bodies, list cursors, and the operator's credentials file and role map. Any bytes give a
//! value or a refusal, never a panic; a body that decodes re-encodes to the same value.
//! The first byte picks the parser.
#![no_main]

use libfuzzer_sys::fuzz_target;
use opx_api::auth::RoleMap;
use opx_api::cursor;
use opx_api::human::{AssigneeRequest, NoteRequest, SeverityRequest, TransitionRequest};
use opx_api::sigv4::LocalCredentials;
use serde::de::DeserializeOwned;
use serde::Serialize;

fn round_trips<T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug>(body: &[u8]) {
    if let Ok(value) = serde_json::from_slice::<T>(body) {
        let bytes = serde_json::to_vec(&value).expect("a decoded body encodes");
        let again: T = serde_json::from_slice(&bytes).expect("an encoded body decodes");
        assert_eq!(again, value);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
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
});
