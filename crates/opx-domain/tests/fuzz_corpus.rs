//! Replays the fuzz corpus (fuzz/corpus), the hostile-input corpus (tests/corpus) and the
//! source fixtures through the fuzzed parsers as ordinary tests, with the fuzz targets'
//! properties: a crash found once stays fixed without running the fuzzer.

// Reading the corpus from disk is the point of this test.
#![allow(clippy::disallowed_methods, clippy::unwrap_used)]

use opx_domain::incident::IncidentEvent;
use opx_domain::rules::{RuleFile, RuleSet};
use opx_domain::source::{parse_payload, SourceConfig};
use std::path::{Path, PathBuf};

fn files(relative: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(relative);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .collect();
    out.sort();
    out
}

#[test]
fn every_payload_in_the_corpora_is_parsed_or_refused_by_name() {
    let mut seen = 0;
    for dir in [
        "fuzz/corpus/parse_payload",
        "tests/corpus/bad",
        "tests/corpus/hostile-valid",
        "crates/opx-domain/tests/fixtures/sources",
    ] {
        for file in files(dir) {
            seen += 1;
            let bytes = std::fs::read(&file).unwrap();
            let named = |field: &str, reason: &str| !field.is_empty() && !reason.is_empty();
            match parse_payload(&bytes, &SourceConfig::default()) {
                Ok(parsed) => {
                    for item in parsed.items {
                        if let Err(rejection) = item {
                            assert!(named(&rejection.field, &rejection.reason), "{file:?}");
                        }
                    }
                }
                Err(rejection) => {
                    assert!(named(&rejection.field, &rejection.reason), "{file:?}")
                }
            }
        }
    }
    assert!(seen > 150, "the corpora were found ({seen} files)");
}

#[test]
fn every_rule_file_in_the_corpora_loads_or_is_refused() {
    for file in files("fuzz/corpus/rule_files")
        .into_iter()
        .chain(files("rules"))
    {
        let Ok(text) = String::from_utf8(std::fs::read(&file).unwrap()) else {
            continue;
        };
        let rule_file = RuleFile {
            path: "corpus.yaml".to_owned(),
            text,
        };
        if let Err(error) = RuleSet::from_files(&[rule_file]) {
            assert!(!error.to_string().is_empty(), "{file:?}");
        }
    }
}

#[test]
fn every_incident_payload_in_the_corpus_round_trips_or_is_refused() {
    const EVENT_TYPES: [&str; 7] = [
        "IncidentOpened",
        "EvidenceAttached",
        "RecoveryRecorded",
        "IncidentTransitioned",
        "NoteAdded",
        "AssigneeChanged",
        "SeverityChanged",
    ];
    for file in files("fuzz/corpus/incident_payload") {
        let data = std::fs::read(&file).unwrap();
        let Some((&selector, payload)) = data.split_first() else {
            continue;
        };
        let event_type = EVENT_TYPES[usize::from(selector) % EVENT_TYPES.len()];
        if let Ok(event) = IncidentEvent::from_payload(event_type, 1, payload) {
            let bytes = event.to_payload().unwrap();
            assert_eq!(
                IncidentEvent::from_payload(event_type, 1, &bytes).unwrap(),
                event,
                "{file:?}"
            );
        }
    }
}
