//! Rule and silence files: any text loads or is refused with a path and a line, never a
//! panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use opx_domain::rules::{RuleFile, RuleSet};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = RuleFile {
        path: "fuzz.yaml".to_owned(),
        text: text.to_owned(),
    };
    if let Err(error) = RuleSet::from_files(&[file]) {
        assert!(!error.to_string().is_empty());
    }
});
