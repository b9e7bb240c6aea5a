//! Stored incident events read back: any payload under any known event type decodes or
//! is refused, never a panic. The first byte picks the event type.
#![no_main]

use libfuzzer_sys::fuzz_target;
use opx_domain::incident::IncidentEvent;

const EVENT_TYPES: [&str; 7] = [
    "IncidentOpened",
    "EvidenceAttached",
    "RecoveryRecorded",
    "IncidentTransitioned",
    "NoteAdded",
    "AssigneeChanged",
    "SeverityChanged",
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, payload)) = data.split_first() else {
        return;
    };
    let event_type = EVENT_TYPES[usize::from(selector) % EVENT_TYPES.len()];
    if let Ok(event) = IncidentEvent::from_payload(event_type, 1, payload) {
        // What decodes re-encodes and decodes to the same event.
        let bytes = event.to_payload().expect("a decoded event encodes");
        let again = IncidentEvent::from_payload(event_type, 1, &bytes).expect("re-decodes");
        assert_eq!(again, event);
    }
});
