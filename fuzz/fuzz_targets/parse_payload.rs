//! Every signal source's parser: any bytes give items or a rejection naming a field and
//! a reason, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use opx_domain::source::{parse_payload, SourceConfig};

fuzz_target!(|data: &[u8]| {
    match parse_payload(data, &SourceConfig::default()) {
        Ok(parsed) => {
            for item in parsed.items {
                if let Err(rejection) = item {
                    assert!(!rejection.field.is_empty() && !rejection.reason.is_empty());
                }
            }
        }
        Err(rejection) => assert!(!rejection.field.is_empty() && !rejection.reason.is_empty()),
    }
});
