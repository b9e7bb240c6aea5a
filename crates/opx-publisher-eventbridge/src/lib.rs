//! Fan-out of committed opx events to an EventBridge bus.
//!
//! [`EventBridgePublisher`] implements the application's [`Publisher`] port with
//! `PutEvents`. Every entry has source [`EVENT_SOURCE`], detail-type = the committed
//! event's type, and a [`PointerDetail`]: where the event is (stream id, sequence, hash),
//! a stable [`message_id`] for subscribers to deduplicate by, its type, and a small
//! [`EventSummary`] for people and paging. The detail never carries
//! the data a stage decides on: a stage re-reads the committed event from the store by
//! its pointer and checks the hash, so a forged or stale notification cannot change a
//! decision.
//!
//! # Limits and retries
//!
//! Entries are sent at most [`ENTRIES_PER_REQUEST_MAX`] per request and at most
//! [`REQUEST_LEN_MAX`] bytes per request (sized the way EventBridge sizes them). EventBridge
//! accepts or refuses each entry separately; only the entries that failed with a
//! retryable error code ([`RETRYABLE_ENTRY_ERROR_CODES`]) are sent again, after a capped
//! exponential backoff, at most [`PUBLISH_ATTEMPTS_MAX`] times in all. Entries refused for
//! good (not authorised, malformed) are not retried.
//!
//! # Errors
//!
//! A publish either delivers every entry or fails with a [`StoreError`] that says what to
//! do: [`StoreError::Unavailable`] when entries still failed transiently after the last
//! attempt (retry later; the stream reader reports the record as a batch failure), and
//! [`StoreError::Invalid`] when EventBridge refused an entry or the request for good
//! (fix the configuration or permissions). Either way the events are already committed
//! and their work items queued, so a failed notification delays work and never loses it.

use aws_sdk_eventbridge::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_eventbridge::operation::put_events::PutEventsError;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use aws_smithy_types::error::display::DisplayErrorContext;
use opx_app::ports::{Publisher, StoreError};
use opx_domain::event::{EventEnvelope, EventPointer};
use opx_domain::hash::Digest;
use opx_domain::signal::truncate_utf8;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

/// The `source` of every entry opx puts on its bus; the stage rules match on it.
pub const EVENT_SOURCE: &str = "opx";
/// Most entries in one `PutEvents` request (an EventBridge limit).
pub const ENTRIES_PER_REQUEST_MAX: usize = 10;
/// Most bytes in one `PutEvents` request, counted as EventBridge counts them (an
/// EventBridge limit: 256 KB).
pub const REQUEST_LEN_MAX: usize = 256 * 1024;
/// How many times one entry is sent in all before its publish fails as unavailable.
pub const PUBLISH_ATTEMPTS_MAX: u32 = 5;
/// Backoff before the second attempt, in milliseconds; it doubles per attempt.
pub const RETRY_BACKOFF_BASE_MS: u64 = 50;
/// Longest backoff between two attempts, in milliseconds.
pub const RETRY_BACKOFF_MAX_MS: u64 = 1_000;
/// Longest value kept in an [`EventSummary`] field, in bytes (cut at a character
/// boundary).
pub const SUMMARY_VALUE_LEN_MAX: usize = 128;
/// The per-entry error codes EventBridge documents as retryable; every other code means
/// the entry will never be accepted as it is.
pub const RETRYABLE_ENTRY_ERROR_CODES: &[&str] = &["InternalFailure", "ThrottlingException"];
/// Request-level error codes that a later retry can cure (the SDK has already retried
/// them with its own policy).
pub const RETRYABLE_REQUEST_ERROR_CODES: &[&str] = &[
    "InternalException",
    "InternalFailure",
    "ThrottlingException",
    "ServiceUnavailable",
    "RequestTimeout",
    "RequestTimeoutException",
];

/// The top-level string fields of an event's payload copied into its summary, by event
/// type. Only these: the summary is for people and paging, never for decisions, so it
/// stays small and a consumer cannot be tempted to decide on it.
pub const SUMMARY_FIELDS: &[(&str, &[&str])] = &[
    ("IncidentOpened", &["environment", "service"]),
    ("IncidentTransitioned", &["from", "to"]),
    ("SeverityChanged", &["from", "to"]),
];

/// The `detail` of every opx bus event: a pointer to the committed event and a small
/// summary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PointerDetail {
    /// The event's stream.
    pub stream_id: String,
    /// The event's sequence in its stream.
    pub sequence: u64,
    /// The event's hash; a stage refuses a stored event with another hash.
    pub hash: Digest,
    /// The notification's identity for subscribers ([`message_id`]): the same on every
    /// publish of this event — the fan-out's, its retries, the sweeper's re-sent page — and
    /// different for every other event, so a subscriber that drops ids it has seen pages
    /// once. (EventBridge's own event id is new on every `PutEvents`.) Absent in details
    /// published before it existed.
    #[serde(default)]
    pub message_id: String,
    /// The event's type (also the entry's detail-type).
    pub event_type: String,
    /// For people and paging only (a stage never reads it, so it may be absent).
    #[serde(default)]
    pub summary: EventSummary,
}

/// What a person reading the bus (or a page) sees besides the pointer. Never decision
/// data.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventSummary {
    /// The stream kind: the stream id up to its first `:` (`signal`, `group`, `incident`,
    /// ...).
    pub stream_kind: String,
    /// The payload's schema version.
    pub schema_version: u32,
    /// The payload's size, in bytes.
    pub payload_len: u64,
    /// The [`SUMMARY_FIELDS`] of this event type that the payload has as strings.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, String>,
}

/// The message id of a committed event's notification: its hash in hex. The hash covers
/// the stream, the sequence, the content and the previous event, so it names this one
/// event, and an event never changes once committed, so every re-send carries the same id.
pub fn message_id(event: &EventEnvelope) -> String {
    event.hash.to_hex()
}

impl PointerDetail {
    /// The detail of a committed event.
    pub fn of(event: &EventEnvelope) -> PointerDetail {
        PointerDetail {
            stream_id: event.stream_id.clone(),
            sequence: event.sequence,
            hash: event.hash,
            message_id: message_id(event),
            event_type: event.event_type.clone(),
            summary: EventSummary::of(event),
        }
    }

    /// The pointer a stage follows.
    pub fn pointer(&self) -> EventPointer {
        EventPointer {
            stream_id: self.stream_id.clone(),
            sequence: self.sequence,
            hash: self.hash,
        }
    }
}

impl EventSummary {
    /// The summary of a committed event (see [`SUMMARY_FIELDS`]).
    pub fn of(event: &EventEnvelope) -> EventSummary {
        let stream_kind = event
            .stream_id
            .split_once(':')
            .map_or(event.stream_id.as_str(), |(kind, _)| kind);
        let mut fields = BTreeMap::new();
        let wanted = SUMMARY_FIELDS
            .iter()
            .find(|(event_type, _)| *event_type == event.event_type)
            .map_or(&[][..], |(_, names)| *names);
        if !wanted.is_empty() {
            // A payload that does not decode still gets a pointer; the summary is optional.
            if let Ok(serde_json::Value::Object(payload)) =
                serde_json::from_slice::<serde_json::Value>(&event.payload)
            {
                for name in wanted {
                    if let Some(serde_json::Value::String(value)) = payload.get(*name) {
                        fields.insert(
                            (*name).to_owned(),
                            truncate_utf8(value, SUMMARY_VALUE_LEN_MAX).to_owned(),
                        );
                    }
                }
            }
        }
        EventSummary {
            stream_kind: truncate_utf8(stream_kind, SUMMARY_VALUE_LEN_MAX).to_owned(),
            schema_version: event.schema_version,
            payload_len: event.payload.len() as u64,
            fields,
        }
    }
}

/// One `PutEvents` entry before it is sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BusEntry {
    /// `stream#sequence`, for error messages.
    pub label: String,
    /// The entry's detail-type (the event type).
    pub detail_type: String,
    /// The entry's detail: a [`PointerDetail`] as JSON.
    pub detail: String,
}

impl BusEntry {
    /// The entry for a committed event.
    pub fn of(event: &EventEnvelope) -> Result<BusEntry, StoreError> {
        let detail = serde_json::to_string(&PointerDetail::of(event)).map_err(|error| {
            StoreError::Invalid(format!(
                "{}#{}: the bus detail does not encode: {error}",
                event.stream_id, event.sequence
            ))
        })?;
        Ok(BusEntry {
            label: format!("{}#{}", event.stream_id, event.sequence),
            detail_type: event.event_type.clone(),
            detail,
        })
    }

    /// The entry's size as EventBridge counts it toward [`REQUEST_LEN_MAX`]: source,
    /// detail-type and detail in UTF-8 bytes, plus the bus name (counted to stay on the
    /// safe side).
    pub fn len(&self, bus_name: &str) -> usize {
        EVENT_SOURCE.len() + self.detail_type.len() + self.detail.len() + bus_name.len()
    }

    /// Whether the entry has neither detail-type nor detail (never true for
    /// [`BusEntry::of`]).
    pub fn is_empty(&self) -> bool {
        self.detail_type.is_empty() && self.detail.is_empty()
    }
}

/// Splits entries into requests of at most [`ENTRIES_PER_REQUEST_MAX`] entries and
/// [`REQUEST_LEN_MAX`] bytes, keeping their order. An entry that alone exceeds the byte
/// limit is refused.
pub fn plan_requests(
    entries: &[BusEntry],
    bus_name: &str,
) -> Result<Vec<Vec<BusEntry>>, StoreError> {
    let mut requests: Vec<Vec<BusEntry>> = Vec::new();
    let mut current: Vec<BusEntry> = Vec::new();
    let mut current_len = 0;
    for entry in entries {
        let len = entry.len(bus_name);
        if len > REQUEST_LEN_MAX {
            return Err(StoreError::Invalid(format!(
                "{}: the bus entry is {len} bytes, more than the {REQUEST_LEN_MAX}-byte PutEvents limit; the detail must stay a pointer",
                entry.label
            )));
        }
        if current.len() == ENTRIES_PER_REQUEST_MAX || current_len + len > REQUEST_LEN_MAX {
            requests.push(std::mem::take(&mut current));
            current_len = 0;
        }
        current_len += len;
        current.push(entry.clone());
    }
    if !current.is_empty() {
        requests.push(current);
    }
    Ok(requests)
}

/// The backoff before attempt `attempt` (1-based; none before the first), in
/// milliseconds: [`RETRY_BACKOFF_BASE_MS`] doubling per attempt, capped at
/// [`RETRY_BACKOFF_MAX_MS`].
pub fn backoff_ms(attempt: u32) -> u64 {
    if attempt <= 1 {
        return 0;
    }
    let doublings = (attempt - 2).min(16);
    (RETRY_BACKOFF_BASE_MS << doublings).min(RETRY_BACKOFF_MAX_MS)
}

/// What EventBridge said about one entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryOutcome {
    /// Accepted.
    Accepted,
    /// Refused, with EventBridge's error code and message.
    Failed {
        /// E.g. `ThrottlingException`, `AccessDeniedException`.
        code: String,
        /// EventBridge's message.
        message: String,
    },
}

/// Why a whole request failed.
#[derive(Debug)]
pub enum RequestFailure {
    /// A later retry can succeed (throttled, timed out, unreachable).
    Transient(String),
    /// It cannot (not authorised, no such bus, invalid request).
    Permanent(String),
}

/// Sends one `PutEvents` request. The SDK implementation is private; tests drive the
/// retry logic through their own transport.
pub trait PutEventsTransport: Send + Sync {
    /// Sends `entries` (at most [`ENTRIES_PER_REQUEST_MAX`]) to `bus_name`; one outcome
    /// per entry, in order.
    fn put_events(
        &self,
        bus_name: &str,
        entries: &[BusEntry],
    ) -> impl Future<Output = Result<Vec<EntryOutcome>, RequestFailure>> + Send;
}

/// Publishes `events` to `bus_name` through `transport`, retrying only the entries that
/// failed with a retryable code; see the crate documentation.
pub async fn publish_with<T: PutEventsTransport>(
    transport: &T,
    bus_name: &str,
    events: &[EventEnvelope],
) -> Result<(), StoreError> {
    let mut pending: Vec<BusEntry> = events.iter().map(BusEntry::of).collect::<Result<_, _>>()?;
    let mut refused: Vec<String> = Vec::new();
    let mut last_transient = String::new();
    let mut attempt = 0;
    while !pending.is_empty() && attempt < PUBLISH_ATTEMPTS_MAX {
        attempt += 1;
        let wait_ms = backoff_ms(attempt);
        if wait_ms > 0 {
            tokio::time::sleep(Duration::from_millis(wait_ms)).await;
        }
        let mut failed: Vec<BusEntry> = Vec::new();
        for request in plan_requests(&pending, bus_name)? {
            match transport.put_events(bus_name, &request).await {
                Ok(outcomes) if outcomes.len() == request.len() => {
                    for (entry, outcome) in request.into_iter().zip(outcomes) {
                        if let EntryOutcome::Failed { code, message } = outcome {
                            let text = format!("{}: {code}: {message}", entry.label);
                            if RETRYABLE_ENTRY_ERROR_CODES.contains(&code.as_str()) {
                                last_transient = text;
                                failed.push(entry);
                            } else {
                                refused.push(text);
                            }
                        }
                    }
                }
                Ok(outcomes) => {
                    last_transient = format!(
                        "PutEvents answered {} results for {} entries",
                        outcomes.len(),
                        request.len()
                    );
                    failed.extend(request);
                }
                Err(RequestFailure::Transient(message)) => {
                    last_transient = message;
                    failed.extend(request);
                }
                Err(RequestFailure::Permanent(message)) => {
                    return Err(StoreError::Invalid(format!(
                        "PutEvents to bus {bus_name} was refused: {message}; check the bus name and the function's events:PutEvents permission"
                    )));
                }
            }
        }
        if !failed.is_empty() {
            tracing::warn!(
                bus = bus_name,
                attempt,
                failed = failed.len(),
                last_error = %last_transient,
                "PutEvents entries failed transiently; retrying only those"
            );
        }
        pending = failed;
    }
    if !refused.is_empty() {
        return Err(StoreError::Invalid(format!(
            "EventBridge refused {} entr{} on bus {bus_name} for good (first: {}); fix the permissions or the entry",
            refused.len(),
            if refused.len() == 1 { "y" } else { "ies" },
            refused[0]
        )));
    }
    if !pending.is_empty() {
        return Err(StoreError::Unavailable {
            message: format!(
                "{} entr{} still failing on bus {bus_name} after {PUBLISH_ATTEMPTS_MAX} attempts (last: {last_transient}); retry later",
                pending.len(),
                if pending.len() == 1 { "y" } else { "ies" },
            ),
            source: None,
        });
    }
    Ok(())
}

/// The [`Publisher`] over EventBridge `PutEvents`. Build it once per process (cold start)
/// and share it.
#[derive(Clone, Debug)]
pub struct EventBridgePublisher {
    client: aws_sdk_eventbridge::Client,
    bus_name: String,
}

impl EventBridgePublisher {
    /// A publisher to `bus_name` through `client`.
    pub fn new(client: aws_sdk_eventbridge::Client, bus_name: impl Into<String>) -> Self {
        EventBridgePublisher {
            client,
            bus_name: bus_name.into(),
        }
    }

    /// A publisher to `bus_name` with a client from the standard AWS configuration chain
    /// (region, credentials, `AWS_ENDPOINT_URL`).
    pub async fn connect(bus_name: impl Into<String>) -> Self {
        let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        EventBridgePublisher::new(aws_sdk_eventbridge::Client::new(&config), bus_name)
    }

    /// The bus.
    pub fn bus_name(&self) -> &str {
        &self.bus_name
    }
}

impl PutEventsTransport for EventBridgePublisher {
    async fn put_events(
        &self,
        bus_name: &str,
        entries: &[BusEntry],
    ) -> Result<Vec<EntryOutcome>, RequestFailure> {
        let request_entries: Vec<PutEventsRequestEntry> = entries
            .iter()
            .map(|entry| {
                PutEventsRequestEntry::builder()
                    .event_bus_name(bus_name)
                    .source(EVENT_SOURCE)
                    .detail_type(&entry.detail_type)
                    .detail(&entry.detail)
                    .build()
            })
            .collect();
        let output = self
            .client
            .put_events()
            .set_entries(Some(request_entries))
            .send()
            .await
            .map_err(classify_request_error)?;
        Ok(output
            .entries()
            .iter()
            .map(|result| match result.error_code() {
                Some(code) => EntryOutcome::Failed {
                    code: code.to_owned(),
                    message: result.error_message().unwrap_or_default().to_owned(),
                },
                None => EntryOutcome::Accepted,
            })
            .collect())
    }
}

fn classify_request_error(error: SdkError<PutEventsError>) -> RequestFailure {
    let text = DisplayErrorContext(&error).to_string();
    match &error {
        SdkError::ServiceError(service) => {
            let transient = matches!(service.err(), PutEventsError::InternalException(_))
                || service
                    .err()
                    .code()
                    .is_some_and(|code| RETRYABLE_REQUEST_ERROR_CODES.contains(&code));
            if transient {
                RequestFailure::Transient(text)
            } else {
                RequestFailure::Permanent(text)
            }
        }
        SdkError::ConstructionFailure(_) => RequestFailure::Permanent(text),
        // Timeouts, dispatch (connection) failures, unreadable responses and anything
        // newer: the request may not have reached EventBridge; try again.
        _ => RequestFailure::Transient(text),
    }
}

impl Publisher for EventBridgePublisher {
    async fn publish(&self, events: &[EventEnvelope]) -> Result<(), StoreError> {
        publish_with(self, &self.bus_name, events).await
    }

    fn delivers(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn event(stream: &str, sequence: u64, event_type: &str, payload: &str) -> EventEnvelope {
        EventEnvelope::seal(
            stream,
            sequence,
            event_type,
            1,
            payload.as_bytes().to_vec(),
            Digest::ZERO,
        )
    }

    fn events(count: u64) -> Vec<EventEnvelope> {
        (1..=count)
            .map(|sequence| event(&format!("signal:{sequence:02}"), 1, "SignalAccepted", "{}"))
            .collect()
    }

    /// A transport that answers from a script: per call, the codes of the entries to fail
    /// (by label) or a whole-request failure; records every request.
    #[derive(Default)]
    struct ScriptedTransport {
        /// For each call in order: labels that fail with the given code.
        entry_failures: Mutex<Vec<BTreeMap<String, String>>>,
        request_failures: Mutex<Vec<Option<RequestFailure>>>,
        requests: Mutex<Vec<Vec<String>>>,
    }

    impl PutEventsTransport for ScriptedTransport {
        async fn put_events(
            &self,
            _bus_name: &str,
            entries: &[BusEntry],
        ) -> Result<Vec<EntryOutcome>, RequestFailure> {
            let call = {
                let mut requests = self.requests.lock().unwrap();
                requests.push(entries.iter().map(|entry| entry.label.clone()).collect());
                requests.len() - 1
            };
            if let Some(Some(failure)) = self
                .request_failures
                .lock()
                .unwrap()
                .get_mut(call)
                .map(Option::take)
            {
                return Err(failure);
            }
            let failures = self
                .entry_failures
                .lock()
                .unwrap()
                .get(call)
                .cloned()
                .unwrap_or_default();
            Ok(entries
                .iter()
                .map(|entry| match failures.get(&entry.label) {
                    Some(code) => EntryOutcome::Failed {
                        code: code.clone(),
                        message: "scripted".into(),
                    },
                    None => EntryOutcome::Accepted,
                })
                .collect())
        }
    }

    #[test]
    fn detail_is_a_pointer_and_a_small_summary() {
        let opened = event(
            "incident:ab",
            1,
            "IncidentOpened",
            r#"{"incident_id":"ab","environment":"111122223333","service":"orders","evidence":[{"alarm":"x"}]}"#,
        );
        let detail: serde_json::Value =
            serde_json::from_str(&BusEntry::of(&opened).unwrap().detail).unwrap();
        assert_eq!(
            detail,
            serde_json::json!({
                "stream_id": "incident:ab",
                "sequence": 1,
                "hash": opened.hash.to_hex(),
                "message_id": opened.hash.to_hex(),
                "event_type": "IncidentOpened",
                "summary": {
                    "stream_kind": "incident",
                    "schema_version": 1,
                    "payload_len": opened.payload.len(),
                    "fields": {"environment": "111122223333", "service": "orders"}
                }
            })
        );
        let parsed: PointerDetail = serde_json::from_value(detail).unwrap();
        assert_eq!(parsed.pointer(), opened.pointer());
    }

    #[test]
    fn the_message_id_names_one_event_and_every_resend_of_it() {
        let opened = event("incident:ab", 1, "IncidentOpened", "{}");
        let first = BusEntry::of(&opened).unwrap();
        let resent = BusEntry::of(&opened.clone()).unwrap();
        assert_eq!(first, resent, "a re-send is the same entry");
        let id = |entry: &BusEntry| {
            serde_json::from_str::<PointerDetail>(&entry.detail)
                .unwrap()
                .message_id
        };
        assert_eq!(id(&first), opened.hash.to_hex());
        let changed = event(
            "incident:ab",
            2,
            "SeverityChanged",
            r#"{"from":"SEV3","to":"SEV1"}"#,
        );
        let other_incident = event("incident:cd", 1, "IncidentOpened", "{}");
        let ids = [
            id(&first),
            id(&BusEntry::of(&changed).unwrap()),
            id(&BusEntry::of(&other_incident).unwrap()),
        ];
        assert!(
            ids[0] != ids[1] && ids[0] != ids[2] && ids[1] != ids[2],
            "{ids:?}"
        );
    }

    #[test]
    fn a_detail_without_a_message_id_still_reads() {
        let opened = event("incident:ab", 1, "IncidentOpened", "{}");
        let mut detail = serde_json::to_value(PointerDetail::of(&opened)).unwrap();
        detail.as_object_mut().unwrap().remove("message_id");
        let parsed: PointerDetail = serde_json::from_value(detail).unwrap();
        assert_eq!(parsed.pointer(), opened.pointer());
        assert_eq!(parsed.message_id, "");
    }

    #[test]
    fn summary_never_copies_decision_data() {
        let accepted = event(
            "signal:01",
            1,
            "SignalAccepted",
            r#"{"signal":{"alarm":"arn","state":"ALARM"}}"#,
        );
        let detail = BusEntry::of(&accepted).unwrap().detail;
        assert!(!detail.contains("ALARM"), "{detail}");
        assert!(!detail.contains("fields"), "{detail}");
    }

    #[test]
    fn requests_hold_at_most_ten_entries_and_256_kb() {
        let entries: Vec<BusEntry> = events(23)
            .iter()
            .map(|e| BusEntry::of(e).unwrap())
            .collect();
        let requests = plan_requests(&entries, "opx").unwrap();
        assert_eq!(
            requests.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![10, 10, 3]
        );
        let big = BusEntry {
            label: "big".into(),
            detail_type: "X".into(),
            detail: "x".repeat(100 * 1024),
        };
        let requests = plan_requests(&[big.clone(), big.clone(), big.clone()], "opx").unwrap();
        assert_eq!(
            requests.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![2, 1]
        );
        let huge = BusEntry {
            detail: "x".repeat(REQUEST_LEN_MAX),
            ..big
        };
        assert!(matches!(
            plan_requests(&[huge], "opx"),
            Err(StoreError::Invalid(_))
        ));
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(
            (1..=8).map(backoff_ms).collect::<Vec<_>>(),
            vec![0, 50, 100, 200, 400, 800, 1000, 1000]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn only_failed_entries_are_retried() {
        let transport = ScriptedTransport::default();
        // Call 1 carries signals 1-10, call 2 signals 11-12; one of each fails.
        *transport.entry_failures.lock().unwrap() = vec![
            BTreeMap::from([("signal:03#1".to_owned(), "ThrottlingException".to_owned())]),
            BTreeMap::from([("signal:11#1".to_owned(), "InternalFailure".to_owned())]),
            BTreeMap::new(),
        ];
        publish_with(&transport, "opx", &events(12)).await.unwrap();
        let requests = transport.requests.lock().unwrap().clone();
        assert_eq!(requests.len(), 3);
        assert_eq!(requests[0].len(), 10);
        assert_eq!(requests[1].len(), 2);
        assert_eq!(requests[2], vec!["signal:03#1", "signal:11#1"]);
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_entry_errors_are_not_retried_and_are_invalid() {
        let transport = ScriptedTransport::default();
        *transport.entry_failures.lock().unwrap() = vec![BTreeMap::from([(
            "signal:02#1".to_owned(),
            "AccessDeniedException".to_owned(),
        )])];
        let error = publish_with(&transport, "opx", &events(3))
            .await
            .unwrap_err();
        assert!(
            matches!(&error, StoreError::Invalid(text) if text.contains("signal:02#1") && text.contains("AccessDeniedException")),
            "{error}"
        );
        assert_eq!(transport.requests.lock().unwrap().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn transient_failures_are_bounded_and_unavailable() {
        let transport = ScriptedTransport::default();
        let always = BTreeMap::from([("signal:01#1".to_owned(), "ThrottlingException".to_owned())]);
        *transport.entry_failures.lock().unwrap() = vec![always; 10];
        let error = publish_with(&transport, "opx", &events(2))
            .await
            .unwrap_err();
        assert!(error.is_transient(), "{error}");
        assert_eq!(
            transport.requests.lock().unwrap().len(),
            PUBLISH_ATTEMPTS_MAX as usize
        );
    }

    #[tokio::test(start_paused = true)]
    async fn request_failures_retry_when_transient_and_stop_when_permanent() {
        let transport = ScriptedTransport::default();
        *transport.request_failures.lock().unwrap() =
            vec![Some(RequestFailure::Transient("timeout".into())), None];
        publish_with(&transport, "opx", &events(2)).await.unwrap();
        assert_eq!(transport.requests.lock().unwrap().len(), 2);

        let transport = ScriptedTransport::default();
        *transport.request_failures.lock().unwrap() = vec![Some(RequestFailure::Permanent(
            "ResourceNotFoundException".into(),
        ))];
        let error = publish_with(&transport, "opx", &events(2))
            .await
            .unwrap_err();
        assert!(matches!(error, StoreError::Invalid(_)));
        assert_eq!(transport.requests.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn nothing_to_publish_sends_nothing() {
        let transport = ScriptedTransport::default();
        publish_with(&transport, "opx", &[]).await.unwrap();
        assert!(transport.requests.lock().unwrap().is_empty());
    }
}
