//! The store conformance suite: one set of behaviours, written once, that every backend of
//! [`Store`] must show. SQLite runs it on a temporary file; DynamoDB runs it against a
//! DynamoDB protocol server.
//!
//! A backend provides a [`StoreHarness`] and expands [`store_conformance_suite!`](crate::store_conformance_suite) in one of
//! its test files, which gives one test per case:
//!
//! ```ignore
//! struct Harness;
//! impl opx_app::conformance::StoreHarness for Harness { /* fresh, another_handle */ }
//! opx_app::store_conformance_suite!(Harness);
//! ```
//!
//! # The contract, beyond the port documentation
//! - An event that is not the next of its stream is [`Conflict::StreamMoved`] carrying the
//!   refused event's sequence, whether its sequence is taken, its `previous_hash` is not the
//!   head's hash, or it leaves a gap (sequence 3 on a one-event stream). All three mean "your
//!   idea of the head is wrong; re-read and decide again", and a backend checks all three
//!   with one condition on the head.
//! - A commit that is refused writes nothing: no event, idempotency record, projection
//!   change or work change — whichever of its writes was refused.
//! - [`Conflict::IdempotencyKeyUsed`] carries the stored record, so the caller compares
//!   request hashes: equal is a duplicate (answer with the stored response), different is a
//!   key reused for another request.
//! - [`Conflict::ProjectionVersion`] carries the stored version (`None`: absent).
//! - [`StoreError::Invalid`] (nothing written) for: more than [`COMMIT_WRITES_MAX`] writes;
//!   a payload over [`PAYLOAD_LEN_MAX`]; a projection document over [`PROJECTION_LEN_MAX`];
//!   an envelope whose hash does not match its content; the same idempotency key, projection
//!   or work item twice in one commit (DynamoDB cannot touch one item twice in a
//!   transaction); a cursor the store did not issue.
//! - Adding a work item that exists, or completing one that does not, is not a conflict.
//! - Lists return every item exactly once across pages, in a stable order; projections in
//!   key order; pending work in insertion order where
//!   [`StoreHarness::pending_work_in_insertion_order`] says so. Cursors are opaque: the
//!   suite only passes them back.
//! - Events read back are identical to the sealed envelopes, byte for byte, and verify.
//! - Racing writers: exactly one of them wins each contended write; the others get the
//!   typed conflict and write nothing. This is how "one open incident per (environment,
//!   service)" holds: the incident is created in the same commit as a pointer projection
//!   created with `expected_version: None`.

use crate::ports::{
    Commit, Conflict, IdempotencyRecord, Page, Projection, ProjectionChange, RejectRecord, Stage,
    Store, StoreError, StoreRead, WorkItem, COMMIT_WRITES_MAX, PROJECTION_LEN_MAX,
    READ_PAGE_SIZE_MAX,
};
use opx_domain::event::{verify_stream, EventEnvelope, PAYLOAD_LEN_MAX};
use opx_domain::hash::Digest;
use std::collections::BTreeSet;
use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;

/// How many writers race in the concurrency cases.
pub const RACING_WRITERS: usize = 16;

/// Most pages the suite follows before it decides a cursor never ends.
const PAGES_MAX: usize = 10_000;

/// What a backend gives the suite.
pub trait StoreHarness {
    /// The backend's store.
    type Store: Store + 'static;

    /// A new, empty store, independent of every other one this harness made.
    fn fresh(&self) -> impl Future<Output = Self::Store> + Send;

    /// A second, independent handle to the same data as `store` (for SQLite, another
    /// connection to the same file), so that racing writers do not share a connection.
    fn another_handle(&self, store: &Self::Store) -> impl Future<Output = Self::Store> + Send;

    /// Whether [`StoreRead::pending_work`] lists items in the order they were added. The
    /// port promises it on a best-effort basis only; backends that keep the order say so,
    /// and the suite then checks it.
    fn pending_work_in_insertion_order(&self) -> bool {
        true
    }
}

/// Runs one case on a multi-threaded runtime with two workers, so that racing tasks really
/// run in parallel. Used by [`store_conformance_suite!`](crate::store_conformance_suite); it builds the runtime itself so
/// that backends need no tokio dependency of their own to run the suite.
pub fn run_case(case: impl Future<Output = ()>) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("the conformance suite needs a tokio runtime");
    runtime.block_on(case);
}

/// Expands to one `#[test]` per conformance case, each running on a fresh store from the
/// harness expression (evaluated once per test) on a two-worker multi-threaded runtime.
#[macro_export]
macro_rules! store_conformance_suite {
    ($harness:expr) => {
        $crate::__store_conformance_cases! { $harness;
            append_first_event,
            append_next_event,
            append_at_a_taken_sequence_conflicts,
            append_with_a_wrong_previous_hash_conflicts,
            append_with_a_gap_conflicts,
            several_events_of_one_stream_in_one_commit,
            events_out_of_order_in_one_commit_conflict,
            empty_commit_writes_nothing,
            refused_commit_whose_last_event_conflicts_writes_nothing,
            refused_commit_whose_idempotency_key_is_used_writes_nothing,
            refused_commit_whose_last_projection_conflicts_writes_nothing,
            idempotency_new_key_is_recorded,
            idempotency_used_key_conflicts_with_the_stored_record,
            projection_create_and_create_again,
            projection_update_with_right_and_stale_versions,
            projection_delete_with_right_and_stale_versions,
            projection_version_that_does_not_grow_is_invalid,
            work_is_added_with_its_event_and_removed_later,
            work_added_twice_or_removed_when_missing_is_not_a_conflict,
            read_stream_pages,
            read_stream_caps_the_page_size,
            list_streams_pages,
            list_projections_pages_in_key_order,
            list_idempotency_pages,
            pending_work_pages,
            list_rejects_pages,
            cursors_not_issued_by_the_store_are_invalid,
            commit_over_the_write_limit_is_invalid,
            payload_over_the_limit_is_invalid,
            projection_over_the_limit_is_invalid,
            tampered_envelope_is_invalid,
            one_item_twice_in_one_commit_is_invalid,
            record_reject_twice_is_one_record,
            stream_head_is_the_last_event,
            events_read_back_are_identical_and_verify,
            projections_rebuild_from_events,
            racing_first_appends_one_wins,
            racing_pointer_projection_creates_one_wins,
            racing_idempotency_keys_one_wins,
            racing_appends_to_different_streams_all_succeed,
        }
    };
}

/// Implementation detail of [`store_conformance_suite!`](crate::store_conformance_suite).
#[doc(hidden)]
#[macro_export]
macro_rules! __store_conformance_cases {
    ($harness:expr; $($case:ident),+ $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::conformance::run_case(async {
                    let harness = $harness;
                    $crate::conformance::$case(&harness).await;
                });
            }
        )+
    };
}

// ---------------------------------------------------------------------------------------
// Fixtures and checks.
// ---------------------------------------------------------------------------------------

/// Canonical JSON, as the pipeline writes it.
fn payload(sequence: u64, note: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "n": sequence, "note": note }))
        .expect("a JSON object serialises")
}

/// `count` sealed events continuing `stream` after `head` (`None`: a new stream).
fn next_events(
    stream: &str,
    head: Option<&EventEnvelope>,
    count: usize,
    note: &str,
) -> Vec<EventEnvelope> {
    let (mut sequence, mut previous) =
        head.map_or((1, Digest::ZERO), |head| (head.sequence + 1, head.hash));
    let mut events = Vec::with_capacity(count);
    for _ in 0..count {
        let event = EventEnvelope::seal(
            stream,
            sequence,
            "ConformanceChecked",
            1,
            payload(sequence, note),
            previous,
        );
        previous = event.hash;
        sequence += 1;
        events.push(event);
    }
    events
}

fn first_event(stream: &str, note: &str) -> EventEnvelope {
    next_events(stream, None, 1, note).remove(0)
}

fn events_commit(events: Vec<EventEnvelope>) -> Commit {
    Commit {
        events,
        ..Commit::default()
    }
}

fn record(key: &str, request: &str) -> IdempotencyRecord {
    IdempotencyRecord {
        key: key.to_string(),
        request_hash: Digest::of_bytes(request.as_bytes()),
        response: format!("{{\"answer\":\"{request}\"}}").into_bytes(),
    }
}

fn projection(kind: &str, key: &str, version: u64, document: &str) -> Projection {
    Projection {
        kind: kind.to_string(),
        key: key.to_string(),
        version,
        document: document.as_bytes().to_vec(),
    }
}

fn put(projection: Projection, expected_version: Option<u64>) -> ProjectionChange {
    ProjectionChange::Put {
        projection,
        expected_version,
    }
}

fn delete(kind: &str, key: &str, expected_version: u64) -> ProjectionChange {
    ProjectionChange::Delete {
        kind: kind.to_string(),
        key: key.to_string(),
        expected_version,
    }
}

fn work(stage: Stage, event: &EventEnvelope) -> WorkItem {
    WorkItem {
        stage,
        input: event.pointer(),
    }
}

fn reject(index: usize) -> RejectRecord {
    RejectRecord {
        id: Digest::of_bytes(format!("payload {index}").as_bytes()),
        origin: format!("alarms.ndjson:{index}"),
        field: "$.detail.state.value".to_string(),
        reason: "unknown alarm state \"SIDEWAYS\"".to_string(),
        excerpt: format!("{{\"detail\":{{\"state\":{{\"value\":\"SIDEWAYS\",\"i\":{index}}}}}}}"),
    }
}

/// A JSON string of exactly `length` bytes (quotes included), so that every backend can
/// store it as text.
fn json_text_of_len(length: usize) -> Vec<u8> {
    let mut text = Vec::with_capacity(length);
    text.push(b'"');
    text.resize(length - 1, b'x');
    text.push(b'"');
    text
}

#[track_caller]
fn ok<T>(result: Result<T, StoreError>, doing: &str) -> T {
    match result {
        Ok(value) => value,
        Err(error) => panic!("{doing}: expected success, got {error} ({error:?})"),
    }
}

#[track_caller]
fn conflict<T: Debug>(result: Result<T, StoreError>, doing: &str) -> Conflict {
    match result {
        Err(StoreError::Conflict(conflict)) => conflict,
        other => panic!("{doing}: expected a conflict, got {other:?}"),
    }
}

#[track_caller]
fn invalid<T: Debug>(result: Result<T, StoreError>, doing: &str) {
    match result {
        Err(StoreError::Invalid(_)) => {}
        other => panic!("{doing}: expected StoreError::Invalid, got {other:?}"),
    }
}

#[track_caller]
fn assert_stream_moved(conflict: Conflict, stream: &str, sequence: u64, doing: &str) {
    assert_eq!(
        conflict,
        Conflict::StreamMoved {
            stream_id: stream.to_string(),
            sequence
        },
        "{doing}"
    );
}

#[track_caller]
fn assert_projection_conflict(
    conflict: Conflict,
    (kind, key): (&str, &str),
    expected: Option<u64>,
    actual: Option<u64>,
    doing: &str,
) {
    assert_eq!(
        conflict,
        Conflict::ProjectionVersion {
            kind: kind.to_string(),
            key: key.to_string(),
            expected,
            actual
        },
        "{doing}"
    );
}

/// Follows a paged list to its end, checking that every cursor moves on.
async fn all_pages<T, F, Fut>(what: &str, limit: usize, mut fetch: F) -> Vec<T>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: Future<Output = Result<Page<T>, StoreError>>,
{
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..PAGES_MAX {
        let page = ok(fetch(cursor.clone()).await, what);
        assert!(
            page.items.len() <= limit,
            "{what}: a page holds {} items, more than the limit {limit}",
            page.items.len()
        );
        items.extend(page.items);
        match page.next {
            None => return items,
            Some(next) => {
                assert_ne!(
                    Some(&next),
                    cursor.as_ref(),
                    "{what}: the cursor did not move on"
                );
                cursor = Some(next);
            }
        }
    }
    panic!("{what}: more than {PAGES_MAX} pages; the cursor never ends")
}

/// Every event of a stream, read a few at a time.
async fn all_events<S: StoreRead>(store: &S, stream: &str) -> Vec<EventEnvelope> {
    let limit = 7;
    let mut events: Vec<EventEnvelope> = Vec::new();
    for _ in 0..PAGES_MAX {
        let from = events.last().map_or(1, |event| event.sequence + 1);
        let page = ok(
            store.read_stream(stream, from, limit).await,
            "reading a stream",
        );
        assert!(
            page.len() <= limit,
            "read_stream returned more events than the limit"
        );
        let done = page.len() < limit;
        events.extend(page);
        if done {
            return events;
        }
    }
    panic!("reading stream {stream}: more than {PAGES_MAX} pages")
}

async fn all_streams<S: StoreRead>(store: &S, limit: usize) -> Vec<String> {
    all_pages("list_streams", limit, |cursor| async move {
        store.list_streams(cursor.as_deref(), limit).await
    })
    .await
}

async fn all_projections<S: StoreRead>(store: &S, kind: &str, limit: usize) -> Vec<Projection> {
    all_pages("list_projections", limit, |cursor| async move {
        store.list_projections(kind, cursor.as_deref(), limit).await
    })
    .await
}

async fn all_idempotency<S: StoreRead>(store: &S, limit: usize) -> Vec<IdempotencyRecord> {
    all_pages("list_idempotency", limit, |cursor| async move {
        store.list_idempotency(cursor.as_deref(), limit).await
    })
    .await
}

async fn all_work<S: StoreRead>(store: &S, limit: usize) -> Vec<WorkItem> {
    all_pages("pending_work", limit, |cursor| async move {
        store.pending_work(cursor.as_deref(), limit).await
    })
    .await
}

async fn all_rejects<S: StoreRead>(store: &S, limit: usize) -> Vec<RejectRecord> {
    all_pages("list_rejects", limit, |cursor| async move {
        store.list_rejects(cursor.as_deref(), limit).await
    })
    .await
}

/// Everything a store holds (projections of the named kinds), in a canonical order.
#[derive(Debug, PartialEq)]
struct Snapshot {
    streams: Vec<(String, Vec<EventEnvelope>)>,
    idempotency: Vec<IdempotencyRecord>,
    projections: Vec<Projection>,
    work: Vec<WorkItem>,
    rejects: Vec<(Digest, RejectRecord)>,
}

async fn snapshot<S: StoreRead>(store: &S, kinds: &[&str]) -> Snapshot {
    let mut stream_ids = all_streams(store, 50).await;
    stream_ids.sort();
    let mut streams = Vec::new();
    for stream in stream_ids {
        let events = all_events(store, &stream).await;
        streams.push((stream, events));
    }
    let mut idempotency = all_idempotency(store, 50).await;
    idempotency.sort_by(|left, right| left.key.cmp(&right.key));
    let mut projections = Vec::new();
    for kind in kinds {
        projections.extend(all_projections(store, kind, 50).await);
    }
    let mut work = all_work(store, 50).await;
    work.sort();
    let mut rejects: Vec<_> = all_rejects(store, 50)
        .await
        .into_iter()
        .map(|reject| (reject.id, reject))
        .collect();
    rejects.sort_by_key(|(id, _)| *id);
    Snapshot {
        streams,
        idempotency,
        projections,
        work,
        rejects,
    }
}

#[track_caller]
fn assert_each_once<T: Ord + Debug + Clone>(listed: &[T], expected: &[T], what: &str) {
    let unique: BTreeSet<T> = listed.iter().cloned().collect();
    assert_eq!(
        unique.len(),
        listed.len(),
        "{what}: an item was listed twice: {listed:?}"
    );
    let expected: BTreeSet<T> = expected.iter().cloned().collect();
    assert_eq!(
        unique, expected,
        "{what}: the listed items differ from the stored ones"
    );
}

/// Starts `RACING_WRITERS` commits at once, each on its own handle to `store`.
async fn race<H: StoreHarness>(
    harness: &H,
    store: &H::Store,
    commits: Vec<Commit>,
) -> Vec<Result<Vec<opx_domain::event::EventPointer>, StoreError>> {
    let barrier = Arc::new(tokio::sync::Barrier::new(commits.len()));
    let mut tasks = Vec::with_capacity(commits.len());
    for commit in commits {
        let handle = harness.another_handle(store).await;
        let barrier = Arc::clone(&barrier);
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            handle.commit(commit).await
        }));
    }
    let mut outcomes = Vec::with_capacity(tasks.len());
    for task in tasks {
        outcomes.push(task.await.expect("a racing writer panicked"));
    }
    outcomes
}

/// Splits race outcomes into the one winner's index and the losers' conflicts.
#[track_caller]
fn one_winner<T: Debug>(
    outcomes: Vec<Result<T, StoreError>>,
    what: &str,
) -> (usize, Vec<Conflict>) {
    let mut winners = Vec::new();
    let mut conflicts = Vec::new();
    for (index, outcome) in outcomes.into_iter().enumerate() {
        match outcome {
            Ok(_) => winners.push(index),
            Err(StoreError::Conflict(conflict)) => conflicts.push(conflict),
            Err(error) => panic!("{what}: a racing writer failed instead of conflicting: {error}"),
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "{what}: exactly one writer must win, {} did",
        winners.len()
    );
    (winners[0], conflicts)
}

// ---------------------------------------------------------------------------------------
// Appends.
// ---------------------------------------------------------------------------------------

/// The first event of a new stream is written and returned as its pointer.
pub async fn append_first_event<H: StoreHarness>(harness: &H) {
    let store = harness.fresh().await;
    let event = first_event("signal:first", "given an empty stream");
    let pointers = ok(
        store.commit(events_commit(vec![event.clone()])).await,
        "first append",
    );
    assert_eq!(pointers, vec![event.pointer()]);
    assert_eq!(
        ok(store.read_stream("signal:first", 1, 10).await, "read"),
        vec![event.clone()]
    );
    assert_eq!(
        ok(store.stream_head("signal:first").await, "head"),
        Some(event)
    );
}

/// The next event (sequence head + 1, previous hash = head's hash) is written.
pub async fn append_next_event<H: StoreHarness>(harness: &H) {
    let store = harness.fresh().await;
    let first = first_event("incident:next", "opened");
    ok(
        store.commit(events_commit(vec![first.clone()])).await,
        "first append",
    );
    let second = next_events("incident:next", Some(&first), 1, "acknowledged").remove(0);
    let pointers = ok(
        store.commit(events_commit(vec![second.clone()])).await,
        "next append",
    );
    assert_eq!(pointers, vec![second.pointer()]);
    assert_eq!(
        ok(store.read_stream("incident:next", 1, 10).await, "read"),
        vec![first, second]
    );
}

/// Appending at a sequence that is taken is `StreamMoved`, even for the very same event
/// (deduplication is the idempotency record's job), and writes nothing.
pub async fn append_at_a_taken_sequence_conflicts<H: StoreHarness>(harness: &H) {
    let store = harness.fresh().await;
    let stream = "incident:taken";
    let stored = next_events(stream, None, 2, "stored");
    ok(
        store.commit(events_commit(stored.clone())).await,
        "given two events",
    );
    let rival = next_events(stream, Some(&stored[0]), 1, "a rival decision").remove(0);
    let refused = conflict(
        store.commit(events_commit(vec![rival])).await,
        "rival at #2",
    );
    assert_stream_moved(refused, stream, 2, "a rival event at a taken sequence");
    let again = conflict(
        store.commit(events_commit(vec![stored[1].clone()])).await,
        "resend #2",
    );
    assert_stream_moved(again, stream, 2, "the stored event appended again");
    let rival_first = first_event(stream, "another first event");
    let refused = conflict(
        store.commit(events_commit(vec![rival_first])).await,
        "rival #1",
    );
    assert_stream_moved(refused, stream, 1, "a rival first event");
    assert_eq!(
        all_events(&store, stream).await,
        stored,
        "nothing was written"
    );
}

/// Appending with a `previous_hash` that is not the head's hash is `StreamMoved`.
pub async fn append_with_a_wrong_previous_hash_conflicts<H: StoreHarness>(harness: &H) {
    let store = harness.fresh().await;
    let stream = "incident:wrong-link";
    let first = first_event(stream, "opened");
    ok(
        store.commit(events_commit(vec![first.clone()])).await,
        "given one event",
    );
    let forged = EventEnvelope::seal(
        stream,
        2,
        "ConformanceChecked",
        1,
        payload(2, "links to another head"),
        Digest::of_bytes(b"not the head"),
    );
    let refused = conflict(
        store.commit(events_commit(vec![forged])).await,
        "wrong link",
    );
    assert_stream_moved(refused, stream, 2, "an event linked to another head");
    let unlinked_first = EventEnvelope::seal(
        "incident:new",
        1,
        "ConformanceChecked",
        1,
        payload(1, "first event with a previous hash"),
        Digest::of_bytes(b"nothing came before"),
    );
    let refused = conflict(
        store.commit(events_commit(vec![unlinked_first])).await,
        "link #1",
    );
    assert_stream_moved(
        refused,
        "incident:new",
        1,
        "a first event must link to ZERO",
    );
    assert_eq!(all_events(&store, stream).await, vec![first]);
    assert_eq!(all_events(&store, "incident:new").await, Vec::new());
}

/// An event that leaves a gap (sequence 3 on a one-event stream) is `StreamMoved` and is
/// not written.
pub async fn append_with_a_gap_conflicts<H: StoreHarness>(harness: &H) {
    let store = harness.fresh().await;
    let stream = "incident:gap";
    let chain = next_events(stream, None, 3, "chain");
    ok(
        store.commit(events_commit(vec![chain[0].clone()])).await,
        "given one event",
    );
    let refused = conflict(
        store.commit(events_commit(vec![chain[2].clone()])).await,
        "gap",
    );
    assert_stream_moved(refused, stream, 3, "sequence 3 on a one-event stream");
    assert_eq!(all_events(&store, stream).await, vec![chain[0].clone()]);
    assert_eq!(
        ok(store.stream_head(stream).await, "head"),
        Some(chain[0].clone())
    );
}

/// Several events of one stream (and of several streams, interleaved) in one commit.
pub async fn several_events_of_one_stream_in_one_commit<H: StoreHarness>(harness: &H) {
    let store = harness.fresh().await;
    let first_three = next_events("incident:batch", None, 3, "batch");
    let pointers = ok(
        store.commit(events_commit(first_three.clone())).await,
        "three events",
    );
    let expected: Vec<_> = first_three.iter().map(EventEnvelope::pointer).collect();
    assert_eq!(pointers, expected, "pointers come back in commit order");
    let next_two = next_events("incident:batch", first_three.last(), 2, "batch");
    ok(
        store.commit(events_commit(next_two.clone())).await,
        "two more",
    );
    let mut all = first_three;
    all.extend(next_two);
    assert_eq!(all_events(&store, "incident:batch").await, all);

    let left = next_events("group:left", None, 2, "left");
    let right = next_events("group:right", None, 2, "right");
    let interleaved = vec![
        left[0].clone(),
        right[0].clone(),
        left[1].clone(),
        right[1].clone(),
    ];
    ok(
        store.commit(events_commit(interleaved)).await,
        "interleaved streams",
    );
    assert_eq!(all_events(&store, "group:left").await, left);
    assert_eq!(all_events(&store, "group:right").await, right);
}

/// Events of one stream out of order within a commit are refused whole.
pub async fn events_out_of_order_in_one_commit_conflict<H: StoreHarness>(harness: &H) {
    let store = harness.fresh().await;
    let chain = next_events("incident:order", None, 2, "order");
    let reversed = vec![chain[1].clone(), chain[0].clone()];
    let refused = conflict(
        store.commit(events_commit(reversed)).await,
        "reversed events",
    );
    assert_stream_moved(refused, "incident:order", 2, "#2 before #1");
    assert_eq!(all_events(&store, "incident:order").await, Vec::new());
}

/// A commit with nothing in it succeeds and writes nothing.
pub async fn empty_commit_writes_nothing<H: StoreHarness>(harness: &H) {
    let store = harness.fresh().await;
    let before = snapshot(&store, &[]).await;
    assert_eq!(
        ok(store.commit(Commit::default()).await, "empty commit"),
        Vec::new()
    );
    assert_eq!(snapshot(&store, &[]).await, before);
}

// ---------------------------------------------------------------------------------------
// Atomicity: a refused commit writes nothing.
// ---------------------------------------------------------------------------------------

const ATOMIC_KINDS: &[&str] = &["incident", "open_incident"];

/// A store holding one incident stream, its projection and a pending work item, and a
/// commit that would touch every kind of write.
async fn atomicity_fixture<S: Store>(store: &S) -> Commit {
    let opened = first_event("incident:atomic", "opened");
    ok(
        store
            .commit(Commit {
                events: vec![opened.clone()],
                idempotency: vec![record("stage/promote/atomic", "promote")],
                projections: vec![put(
                    projection("incident", "atomic", 1, "{\"state\":\"OPEN\"}"),
                    None,
                )],
                work_added: vec![work(Stage::Promote, &opened)],
                ..Commit::default()
            })
            .await,
        "given an incident",
    );
    let acknowledged = next_events("incident:atomic", Some(&opened), 1, "acknowledged");
    let other = first_event("signal:atomic", "accepted");
    Commit {
        events: vec![other.clone(), acknowledged[0].clone()],
        idempotency: vec![record("api/local:ana/ack-1", "acknowledge")],
        projections: vec![
            put(
                projection("incident", "atomic", 2, "{\"state\":\"ACKNOWLEDGED\"}"),
                Some(1),
            ),
            put(
                projection("open_incident", "prod/orders", 1, "{\"id\":\"atomic\"}"),
                None,
            ),
        ],
        work_added: vec![work(Stage::Detect, &other)],
        work_done: vec![work(Stage::Promote, &opened)],
    }
}

/// A commit whose last event conflicts writes none of its events, records, projection or
/// work changes.
pub async fn refused_commit_whose_last_event_conflicts_writes_nothing<H: StoreHarness>(
    harness: &H,
) {
    let store = harness.fresh().await;
    let mut commit = atomicity_fixture(&store).await;
    // The last event re-uses the incident's first sequence.
    commit
        .events
        .push(first_event("incident:atomic", "a rival opening"));
    let before = snapshot(&store, ATOMIC_KINDS).await;
    let refused = conflict(store.commit(commit).await, "last event conflicts");
    assert_stream_moved(refused, "incident:atomic", 1, "the last event");
    assert_eq!(
        snapshot(&store, ATOMIC_KINDS).await,
        before,
        "nothing was written"
    );
}

/// A commit whose idempotency key is used writes nothing.
pub async fn refused_commit_whose_idempotency_key_is_used_writes_nothing<H: StoreHarness>(
    harness: &H,
) {
    let store = harness.fresh().await;
    let mut commit = atomicity_fixture(&store).await;
    commit
        .idempotency
        .push(record("stage/promote/atomic", "promote"));
    let before = snapshot(&store, ATOMIC_KINDS).await;
    let refused = conflict(store.commit(commit).await, "used key");
    assert!(
        matches!(refused, Conflict::IdempotencyKeyUsed { .. }),
        "expected IdempotencyKeyUsed, got {refused:?}"
    );
    assert_eq!(
        snapshot(&store, ATOMIC_KINDS).await,
        before,
        "nothing was written"
    );
}

/// A commit whose last projection change is stale writes nothing.
pub async fn refused_commit_whose_last_projection_conflicts_writes_nothing<H: StoreHarness>(
    harness: &H,
) {
    let store = harness.fresh().await;
    let mut commit = atomicity_fixture(&store).await;
    commit
        .projections
        .push(put(projection("incident", "other", 2, "{}"), Some(1)));
    let before = snapshot(&store, ATOMIC_KINDS).await;
    let refused = conflict(store.commit(commit).await, "stale projection");
    assert_projection_conflict(
        refused,
        ("incident", "other"),
        Some(1),
        None,
        "last projection",
    );
    assert_eq!(
        snapshot(&store, ATOMIC_KINDS).await,
        before,
        "nothing was written"
    );
}

// ---------------------------------------------------------------------------------------
// Idempotency.
// ---------------------------------------------------------------------------------------

/// A new key is recorded and read back as written.
pub async fn idempotency_new_key_is_recorded<H: StoreHarness>(harness: &H) {
    let store = harness.fresh().await;
    let written = record("ingest/signal:ab12", "alarm payload");
    let commit = Commit {
        idempotency: vec![written.clone()],
        ..Commit::default()
    };
    ok(store.commit(commit).await, "new key");
    assert_eq!(
        ok(store.idempotency(&written.key).await, "read"),
        Some(written)
    );
    assert_eq!(
        ok(store.idempotency("ingest/never-seen").await, "read missing"),
        None
    );
}

/// A used key conflicts and carries the stored record, so the caller can tell a duplicate
/// (same request hash) from a reused key (another hash); the stored record is unchanged.
pub async fn idempotency_used_key_conflicts_with_the_stored_record<H: StoreHarness>(harness: &H) {
    let store = harness.fresh().await;
    let stored = record("api/local:ana/retry-7", "acknowledge incident 1");
    let commit = Commit {
        idempotency: vec![stored.clone()],
        ..Commit::default()
    };
    ok(store.commit(commit).await, "first use");

    let duplicate = Commit {
        idempotency: vec![stored.clone()],
        ..Commit::default()
    };
    match conflict(store.commit(duplicate).await, "same request again") {
        Conflict::IdempotencyKeyUsed { existing } => {
            assert_eq!(existing, stored);
            assert_eq!(existing.request_hash, stored.request_hash, "a duplicate");
        }
        other => panic!("expected IdempotencyKeyUsed, got {other:?}"),
    }
    let reuse = record("api/local:ana/retry-7", "close incident 2");
    let reused = Commit {
        idempotency: vec![reuse.clone()],
        ..Commit::default()
    };
    match conflict(store.commit(reused).await, "another request, same key") {
        Conflict::IdempotencyKeyUsed { existing } => {
            assert_eq!(existing, stored);
            assert_ne!(existing.request_hash, reuse.request_hash, "a reused key");
        }
        other => panic!("expected IdempotencyKeyUsed, got {other:?}"),
    }
    assert_eq!(
        ok(store.idempotency(&stored.key).await, "read"),
        Some(stored)
    );
}

// ---------------------------------------------------------------------------------------
// Projections.
// ---------------------------------------------------------------------------------------

async fn change<S: Store>(store: &S, change: ProjectionChange) -> Result<(), StoreError> {
    store
        .commit(Commit {
            projections: vec![change],
            ..Commit::default()
        })
        .await
        .map(|_| ())
}

/// Create with `expected_version: None`; creating again is a conflict naming the stored
/// version.
pub async fn projection_create_and_create_again<H: StoreHarness>(harness: &H) {
    let store = harness.fresh().await;
    let created = projection("open_incident", "prod/orders", 1, "{\"id\":\"first\"}");
    ok(change(&store, put(created.clone(), None)).await, "create");
    assert_eq!(
        ok(
            store.projection("open_incident", "prod/orders").await,
            "read"
        ),
        Some(created.clone())
    );
    let again = projection("open_incident", "prod/orders", 1, "{\"id\":\"second\"}");
    let refused = conflict(change(&store, put(again, None)).await, "create again");
    assert_projection_conflict(
        refused,
        ("open_incident", "prod/orders"),
        None,
        Some(1),
        "create again",
    );
    assert_eq!(
        ok(
            store.projection("open_incident", "prod/orders").await,
            "read"
        ),
        Some(created)
    );
    assert_eq!(
        ok(
            store.projection("open_incident", "prod/payments").await,
            "missing"
        ),
        None
    );
}

/// Update with the stored version; a stale or absent expected version is a conflict.
pub async fn projection_update_with_right_and_stale_versions<H: StoreHarness>(harness: &H) {
    let store = harness.fresh().await;
    let key = ("incident", "i-1");
    ok(
        change(
            &store,
            put(projection("incident", "i-1", 1, "{\"v\":1}"), None),
        )
        .await,
        "create",
    );
    let updated = projection("incident", "i-1", 2, "{\"v\":2}");
    ok(
        change(&store, put(updated.clone(), Some(1))).await,
        "update at 1",
    );
    let stale = conflict(
        change(
            &store,
            put(
                projection("incident", "i-1", 2, "{\"v\":\"lost\"}"),
                Some(1),
            ),
        )
        .await,
        "update at a stale version",
    );
    assert_projection_conflict(stale, key, Some(1), Some(2), "stale update");
    let ahead = conflict(
        change(&store, put(projection("incident", "i-1", 9, "{}"), Some(8))).await,
        "update at a version from the future",
    );
    assert_projection_conflict(ahead, key, Some(8), Some(2), "update ahead");
    let missing = conflict(
        change(&store, put(projection("incident", "i-2", 2, "{}"), Some(1))).await,
        "update of a missing projection",
    );
    assert_projection_conflict(missing, ("incident", "i-2"), Some(1), None, "missing");
    assert_eq!(
        ok(store.projection("incident", "i-1").await, "read"),
        Some(updated)
    );
    assert_eq!(ok(store.projection("incident", "i-2").await, "read"), None);
}

/// Delete with the stored version; a stale version, or a missing projection, is a
/// conflict; a deleted projection can be created again.
pub async fn projection_delete_with_right_and_stale_versions<H: StoreHarness>(harness: &H) {
    let store = harness.fresh().await;
    let key = ("open_incident", "prod/orders");
    ok(
        change(
            &store,
            put(projection(key.0, key.1, 1, "{\"id\":\"a\"}"), None),
        )
        .await,
        "create",
    );
    ok(
        change(
            &store,
            put(projection(key.0, key.1, 2, "{\"id\":\"a\"}"), Some(1)),
        )
        .await,
        "v2",
    );
    let stale = conflict(
        change(&store, delete(key.0, key.1, 1)).await,
        "stale delete",
    );
    assert_projection_conflict(stale, key, Some(1), Some(2), "stale delete");
    assert!(
        ok(store.projection(key.0, key.1).await, "read").is_some(),
        "still there"
    );
    ok(change(&store, delete(key.0, key.1, 2)).await, "delete at 2");
    assert_eq!(ok(store.projection(key.0, key.1).await, "read"), None);
    let gone = conflict(
        change(&store, delete(key.0, key.1, 2)).await,
        "delete again",
    );
    assert_projection_conflict(gone, key, Some(2), None, "delete of a missing projection");
    let reopened = projection(key.0, key.1, 1, "{\"id\":\"b\"}");
    ok(
        change(&store, put(reopened.clone(), None)).await,
        "create after delete",
    );
    assert_eq!(
        ok(store.projection(key.0, key.1).await, "read"),
        Some(reopened)
    );
}

/// A replacement whose new version is not greater than the expected one is `Invalid` (the
/// port requires versions to grow, so a stale reader can never match a newer document).
pub async fn projection_version_that_does_not_grow_is_invalid<H: StoreHarness>(harness: &H) {
    let store = harness.fresh().await;
    let created = projection("incident", "i-1", 3, "{\"v\":3}");
    ok(
        change(&store, put(created.clone(), None)).await,
        "create at 3",
    );
    let same = projection("incident", "i-1", 3, "{\"v\":\"same\"}");
    invalid(
        change(&store, put(same, Some(3))).await,
        "replace at 3 with version 3",
    );
    let lower = projection("incident", "i-1", 2, "{\"v\":\"lower\"}");
    invalid(
        change(&store, put(lower, Some(3))).await,
        "replace at 3 with version 2",
    );
    assert_eq!(
        ok(store.projection("incident", "i-1").await, "read"),
        Some(created),
        "nothing was written"
    );
}

// ---------------------------------------------------------------------------------------
// Work queue.
// ---------------------------------------------------------------------------------------

/// Work is enqueued in the commit that writes its event and removed by a later commit.
pub async fn work_is_added_with_its_event_and_removed_later<H: StoreHarness>(harness: &H) {
    let store = harness.fresh().await;
    let signal = first_event("signal:work", "accepted");
    let detect = work(Stage::Detect, &signal);
    let commit = Commit {
        events: vec![signal.clone()],
        work_added: vec![detect.clone()],
        ..Commit::default()
    };
    ok(store.commit(commit).await, "event with its work");
    assert_eq!(all_work(&store, 10).await, vec![detect.clone()]);

    let evaluated = next_events("signal:work", Some(&signal), 1, "evaluated").remove(0);
    let correlate = work(Stage::Correlate, &evaluated);
    let step = Commit {
        events: vec![evaluated],
        work_added: vec![correlate.clone()],
        work_done: vec![detect],
        ..Commit::default()
    };
    ok(store.commit(step).await, "the detect step");
    assert_eq!(all_work(&store, 10).await, vec![correlate]);
}

/// Adding a pending item again, or completing a missing one, succeeds and changes nothing
/// (the re-added item keeps its place).
pub async fn work_added_twice_or_removed_when_missing_is_not_a_conflict<H: StoreHarness>(
    harness: &H,
) {
    let store = harness.fresh().await;
    let events = next_events("signal:twice", None, 3, "accepted");
    let items: Vec<WorkItem> = events
        .iter()
        .map(|event| work(Stage::Detect, event))
        .collect();
    let commit = Commit {
        events: events.clone(),
        work_added: items.clone(),
        ..Commit::default()
    };
    ok(store.commit(commit).await, "three items");
    let again = Commit {
        work_added: vec![items[0].clone()],
        ..Commit::default()
    };
    ok(store.commit(again).await, "first item again");
    let missing = work(Stage::Promote, &events[0]);
    let done = Commit {
        work_done: vec![missing],
        ..Commit::default()
    };
    ok(store.commit(done).await, "complete a missing item");
    let listed = all_work(&store, 10).await;
    if harness.pending_work_in_insertion_order() {
        assert_eq!(listed, items, "the re-added item keeps its place");
    } else {
        assert_each_once(&listed, &items, "pending work");
    }
}

// ---------------------------------------------------------------------------------------
// Pagination.
// ---------------------------------------------------------------------------------------

/// `read_stream` pages by `from_sequence`, in sequence order, at most `limit` at a time.
pub async fn read_stream_pages<H: StoreHarness>(harness: &H) {
    let store = harness.fresh().await;
    let stream = "incident:pages";
    let events = next_events(stream, None, 25, "paged");
    ok(
        store.commit(events_commit(events[..20].to_vec())).await,
        "first 20",
    );
    ok(
        store.commit(events_commit(events[20..].to_vec())).await,
        "last 5",
    );
    assert_eq!(
        all_events(&store, stream).await,
        events,
        "every event once, in order"
    );
    let middle = ok(store.read_stream(stream, 11, 4).await, "from the middle");
    assert_eq!(middle, events[10..14].to_vec());
    let tail = ok(store.read_stream(stream, 24, 10).await, "the tail");
    assert_eq!(tail, events[23..].to_vec());
    assert_eq!(
        ok(store.read_stream(stream, 26, 10).await, "past the head"),
        Vec::new()
    );
    assert_eq!(
        ok(store.read_stream("incident:none", 1, 10).await, "no stream"),
        Vec::new()
    );
}

/// A limit above [`READ_PAGE_SIZE_MAX`] is capped.
pub async fn read_stream_caps_the_page_size<H: StoreHarness>(harness: &H) {
    let store = harness.fresh().await;
    let stream = "incident:long";
    let events = next_events(stream, None, READ_PAGE_SIZE_MAX + 1, "long");
    for chunk in events.chunks(COMMIT_WRITES_MAX) {
        ok(
            store.commit(events_commit(chunk.to_vec())).await,
            "filling a long stream",
        );
    }
    let page = ok(
        store.read_stream(stream, 1, READ_PAGE_SIZE_MAX * 10).await,
        "huge limit",
    );
    assert_eq!(
        page.len(),
        READ_PAGE_SIZE_MAX,
        "the page is capped at READ_PAGE_SIZE_MAX"
    );
    assert_eq!(page[..], events[..READ_PAGE_SIZE_MAX]);
    let rest = ok(
        store
            .read_stream(stream, READ_PAGE_SIZE_MAX as u64 + 1, 10)
            .await,
        "rest",
    );
    assert_eq!(rest, events[READ_PAGE_SIZE_MAX..].to_vec());
}

/// `list_streams` lists every stream exactly once, in a stable order.
pub async fn list_streams_pages<H: StoreHarness>(harness: &H) {
    let store = harness.fresh().await;
    let names: Vec<String> = (0..11)
        .map(|index| format!("signal:{:02}", (index * 7) % 11))
        .collect();
    for name in &names {
        // Streams of different lengths, so that a scan over events is not mistaken for one
        // over streams.
        let count = 1 + name.len() % 3;
        ok(
            store
                .commit(events_commit(next_events(name, None, count, "s")))
                .await,
            "a stream",
        );
    }
    let listed = all_streams(&store, 3).await;
    assert_each_once(&listed, &names, "list_streams");
    assert_eq!(all_streams(&store, 3).await, listed, "the order is stable");
    assert_eq!(
        all_streams(&store, 4).await,
        listed,
        "the order does not depend on the limit"
    );
}

/// `list_projections` lists the projections of one kind exactly once, in key order.
pub async fn list_projections_pages_in_key_order<H: StoreHarness>(harness: &H) {
    let store = harness.fresh().await;
    let mut keys: Vec<String> = (0..10)
        .map(|index| format!("i-{:02}", (index * 3) % 10))
        .collect();
    for key in &keys {
        ok(
            change(&store, put(projection("incident", key, 1, "{}"), None)).await,
            "incident",
        );
    }
    for key in ["e-1", "e-2", "i-00-other-kind"] {
        ok(
            change(&store, put(projection("evidence", key, 1, "{}"), None)).await,
            "evidence",
        );
    }
    keys.sort();
    let listed = all_projections(&store, "incident", 3).await;
    let listed_keys: Vec<String> = listed.iter().map(|p| p.key.clone()).collect();
    assert_eq!(
        listed_keys, keys,
        "every incident projection once, in key order"
    );
    assert!(
        listed.iter().all(|p| p.kind == "incident"),
        "only the kind asked for"
    );
    assert_eq!(all_projections(&store, "nothing", 3).await, Vec::new());
}

/// `list_idempotency` lists every record exactly once, in a stable order.
pub async fn list_idempotency_pages<H: StoreHarness>(harness: &H) {
    let store = harness.fresh().await;
    let records: Vec<IdempotencyRecord> = (0..10)
        .map(|index| {
            record(
                &format!("stage/detect/signal:{:02}/1", (index * 7) % 10),
                "detect",
            )
        })
        .collect();
    for pair in records.chunks(2) {
        ok(
            store
                .commit(Commit {
                    idempotency: pair.to_vec(),
                    ..Commit::default()
                })
                .await,
            "keys",
        );
    }
    let listed = all_idempotency(&store, 3).await;
    let listed_keys: Vec<String> = listed.iter().map(|r| r.key.clone()).collect();
    let keys: Vec<String> = records.iter().map(|r| r.key.clone()).collect();
    assert_each_once(&listed_keys, &keys, "list_idempotency");
    for listed_record in &listed {
        assert!(
            records.contains(listed_record),
            "{listed_record:?} is read back as written"
        );
    }
    assert_eq!(
        all_idempotency(&store, 3).await,
        listed,
        "the order is stable"
    );
}

/// `pending_work` lists every item exactly once (in insertion order where the backend keeps
/// it), also after items in the middle were completed.
pub async fn pending_work_pages<H: StoreHarness>(harness: &H) {
    let store = harness.fresh().await;
    let mut items = Vec::new();
    // Streams named against insertion order, so that key order is not insertion order.
    for index in 0..4 {
        let events = next_events(&format!("signal:{}", 9 - index), None, 3, "w");
        let added: Vec<WorkItem> = events
            .iter()
            .map(|event| work(Stage::Detect, event))
            .collect();
        items.extend(added.clone());
        ok(
            store
                .commit(Commit {
                    events,
                    work_added: added,
                    ..Commit::default()
                })
                .await,
            "work",
        );
    }
    let check = |listed: Vec<WorkItem>, expected: &[WorkItem]| {
        if harness.pending_work_in_insertion_order() {
            assert_eq!(listed, expected, "pending work in insertion order");
        } else {
            assert_each_once(&listed, expected, "pending work");
        }
    };
    check(all_work(&store, 5).await, &items);
    let done: Vec<WorkItem> = vec![items[1].clone(), items[6].clone(), items[7].clone()];
    ok(
        store
            .commit(Commit {
                work_done: done.clone(),
                ..Commit::default()
            })
            .await,
        "done",
    );
    items.retain(|item| !done.contains(item));
    check(all_work(&store, 2).await, &items);
}

/// `list_rejects` lists every reject exactly once, in a stable order.
pub async fn list_rejects_pages<H: StoreHarness>(harness: &H) {
    let store = harness.fresh().await;
    let rejects: Vec<RejectRecord> = (0..10).map(reject).collect();
    for item in &rejects {
        ok(store.record_reject(item.clone()).await, "record a reject");
    }
    let listed = all_rejects(&store, 3).await;
    let ids: Vec<Digest> = listed.iter().map(|r| r.id).collect();
    let expected: Vec<Digest> = rejects.iter().map(|r| r.id).collect();
    assert_each_once(&ids, &expected, "list_rejects");
    for listed_reject in &listed {
        assert!(
            rejects.contains(listed_reject),
            "{listed_reject:?} is read back as written"
        );
    }
    assert_eq!(all_rejects(&store, 3).await, listed, "the order is stable");
}

/// A cursor the store did not issue is `Invalid` on every list.
pub async fn cursors_not_issued_by_the_store_are_invalid<H: StoreHarness>(harness: &H) {
    let store = harness.fresh().await;
    for forged in ["not a cursor", "\u{0}\u{1}'; DROP TABLE events; --", "%%%%"] {
        let cursor = Some(forged);
        invalid(store.list_streams(cursor, 5).await, "list_streams");
        invalid(store.list_idempotency(cursor, 5).await, "list_idempotency");
        invalid(
            store.list_projections("incident", cursor, 5).await,
            "list_projections",
        );
        invalid(store.pending_work(cursor, 5).await, "pending_work");
        invalid(store.list_rejects(cursor, 5).await, "list_rejects");
    }
}

// ---------------------------------------------------------------------------------------
// Limits and malformed requests.
// ---------------------------------------------------------------------------------------

/// [`COMMIT_WRITES_MAX`] writes are accepted; one more is `Invalid` and writes nothing.
pub async fn commit_over_the_write_limit_is_invalid<H: StoreHarness>(harness: &H) {
    let store = harness.fresh().await;
    let records = |prefix: &str, count: usize| -> Vec<IdempotencyRecord> {
        (0..count)
            .map(|index| record(&format!("{prefix}/{index:03}"), "r"))
            .collect()
    };
    let over = Commit {
        idempotency: records("over", COMMIT_WRITES_MAX + 1),
        ..Commit::default()
    };
    invalid(store.commit(over).await, "COMMIT_WRITES_MAX + 1 writes");
    assert_eq!(
        ok(store.idempotency("over/000").await, "read"),
        None,
        "nothing written"
    );
    let at = Commit {
        idempotency: records("at", COMMIT_WRITES_MAX),
        ..Commit::default()
    };
    ok(store.commit(at).await, "exactly COMMIT_WRITES_MAX writes");
}

/// A payload of [`PAYLOAD_LEN_MAX`] bytes is accepted; one byte more is `Invalid`.
pub async fn payload_over_the_limit_is_invalid<H: StoreHarness>(harness: &H) {
    let store = harness.fresh().await;
    let over = EventEnvelope::seal(
        "signal:huge",
        1,
        "SignalAccepted",
        1,
        json_text_of_len(PAYLOAD_LEN_MAX + 1),
        Digest::ZERO,
    );
    invalid(
        store.commit(events_commit(vec![over])).await,
        "payload over the limit",
    );
    assert_eq!(
        ok(store.stream_head("signal:huge").await, "head"),
        None,
        "nothing written"
    );
    let at = EventEnvelope::seal(
        "signal:huge",
        1,
        "SignalAccepted",
        1,
        json_text_of_len(PAYLOAD_LEN_MAX),
        Digest::ZERO,
    );
    ok(
        store.commit(events_commit(vec![at.clone()])).await,
        "payload at the limit",
    );
    assert_eq!(
        ok(store.read_stream("signal:huge", 1, 1).await, "read"),
        vec![at]
    );
}

/// A projection document of [`PROJECTION_LEN_MAX`] bytes is accepted; one more is
/// `Invalid`.
pub async fn projection_over_the_limit_is_invalid<H: StoreHarness>(harness: &H) {
    let store = harness.fresh().await;
    let mut over = projection("incident", "big", 1, "");
    over.document = json_text_of_len(PROJECTION_LEN_MAX + 1);
    invalid(
        change(&store, put(over, None)).await,
        "projection over the limit",
    );
    assert_eq!(
        ok(store.projection("incident", "big").await, "read"),
        None,
        "nothing written"
    );
    let mut at = projection("incident", "big", 1, "");
    at.document = json_text_of_len(PROJECTION_LEN_MAX);
    ok(
        change(&store, put(at.clone(), None)).await,
        "projection at the limit",
    );
    assert_eq!(
        ok(store.projection("incident", "big").await, "read"),
        Some(at)
    );
}

/// An envelope whose hash does not cover its content is `Invalid`: a store never holds a
/// chain that fails verification from the moment it is written.
pub async fn tampered_envelope_is_invalid<H: StoreHarness>(harness: &H) {
    let store = harness.fresh().await;
    let mut tampered = first_event("incident:tampered", "sealed");
    tampered.payload = payload(1, "changed after sealing");
    invalid(
        store.commit(events_commit(vec![tampered])).await,
        "tampered payload",
    );
    let mut renumbered = next_events("incident:tampered", None, 2, "sealed").remove(1);
    renumbered.sequence = 1;
    renumbered.previous_hash = Digest::ZERO;
    invalid(
        store.commit(events_commit(vec![renumbered])).await,
        "renumbered event",
    );
    assert_eq!(all_events(&store, "incident:tampered").await, Vec::new());
}

/// The same idempotency key, projection or work item twice in one commit is `Invalid`.
pub async fn one_item_twice_in_one_commit_is_invalid<H: StoreHarness>(harness: &H) {
    let store = harness.fresh().await;
    let before = snapshot(&store, &["incident"]).await;
    let twice_key = Commit {
        idempotency: vec![record("twice", "a"), record("twice", "b")],
        ..Commit::default()
    };
    invalid(store.commit(twice_key).await, "one key twice");
    let twice_projection = Commit {
        projections: vec![
            put(projection("incident", "twice", 1, "{}"), None),
            delete("incident", "twice", 1),
        ],
        ..Commit::default()
    };
    invalid(store.commit(twice_projection).await, "one projection twice");
    let event = first_event("signal:twice", "accepted");
    let item = work(Stage::Detect, &event);
    let twice_work = Commit {
        events: vec![event],
        work_added: vec![item.clone()],
        work_done: vec![item],
        ..Commit::default()
    };
    invalid(
        store.commit(twice_work).await,
        "one work item added and done",
    );
    assert_eq!(
        snapshot(&store, &["incident"]).await,
        before,
        "nothing was written"
    );
}

// ---------------------------------------------------------------------------------------
// Rejects, heads, read-back.
// ---------------------------------------------------------------------------------------

/// Recording the same reject twice keeps one record.
pub async fn record_reject_twice_is_one_record<H: StoreHarness>(harness: &H) {
    let store = harness.fresh().await;
    ok(store.record_reject(reject(1)).await, "first");
    ok(store.record_reject(reject(1)).await, "again");
    ok(store.record_reject(reject(2)).await, "another");
    let listed = all_rejects(&store, 10).await;
    assert_eq!(listed.len(), 2, "one record per reject id: {listed:?}");
    assert!(listed.contains(&reject(1)) && listed.contains(&reject(2)));
}

/// `stream_head` is `None` for an unknown stream, else the last event.
pub async fn stream_head_is_the_last_event<H: StoreHarness>(harness: &H) {
    let store = harness.fresh().await;
    assert_eq!(ok(store.stream_head("incident:head").await, "empty"), None);
    let events = next_events("incident:head", None, 4, "head");
    ok(
        store.commit(events_commit(events[..3].to_vec())).await,
        "three",
    );
    assert_eq!(
        ok(store.stream_head("incident:head").await, "head"),
        Some(events[2].clone())
    );
    ok(
        store.commit(events_commit(events[3..].to_vec())).await,
        "one more",
    );
    assert_eq!(
        ok(store.stream_head("incident:head").await, "head"),
        Some(events[3].clone())
    );
    assert_eq!(
        ok(store.stream_head("incident:hea").await, "prefix"),
        None,
        "not a prefix match"
    );
}

/// Events come back byte-identical to what was sealed, and their chains verify.
pub async fn events_read_back_are_identical_and_verify<H: StoreHarness>(harness: &H) {
    let store = harness.fresh().await;
    let payloads: [&[u8]; 6] = [
        b"{}",
        b"{\"alarm\":\"orders-api-5xx\",\"state\":\"ALARM\",\"time\":\"2026-11-24T03:00:09.512+0000\"}",
        "{\"note\":\"caf\u{e9} \u{1f525} \\\"quoted\\\" \\\\ \\n\"}".as_bytes(),
        b"{\"nested\":{\"a\":[1,2,{\"b\":null}],\"z\":true}}",
        b"[]",
        b"{\"sql\":\"'; DROP TABLE events; --\",\"shell\":\"$(rm -rf /)\"}",
    ];
    let stream = "incident:read-back";
    let mut previous = Digest::ZERO;
    let mut sealed = Vec::new();
    for (index, bytes) in payloads.iter().enumerate() {
        let sequence = index as u64 + 1;
        let event_type = ["IncidentOpened", "EvidenceAttached", "NoteAdded"][index % 3];
        let event = EventEnvelope::seal(
            stream,
            sequence,
            event_type,
            u32::try_from(index % 3 + 1).unwrap_or(1),
            bytes.to_vec(),
            previous,
        );
        previous = event.hash;
        sealed.push(event);
    }
    ok(
        store.commit(events_commit(sealed[..2].to_vec())).await,
        "first two",
    );
    ok(
        store.commit(events_commit(sealed[2..].to_vec())).await,
        "the rest",
    );
    let read = all_events(&store, stream).await;
    assert_eq!(read, sealed, "byte-identical envelopes");
    for (read_event, sealed_event) in read.iter().zip(&sealed) {
        assert_eq!(read_event.payload, sealed_event.payload, "payload bytes");
    }
    assert_eq!(
        verify_stream(stream, &read),
        Ok(sealed[sealed.len() - 1].hash),
        "the chain verifies"
    );
}

/// Projections kept in step with events equal their rebuild from the events, and a
/// rebuild (delete at the stored version, create again) restores them exactly.
pub async fn projections_rebuild_from_events<H: StoreHarness>(harness: &H) {
    let store = harness.fresh().await;
    let kind = "stream_summary";
    let summary = |events: &[EventEnvelope]| -> String {
        let head = events.last().map_or(Digest::ZERO, |event| event.hash);
        format!(
            "{{\"count\":{},\"head\":\"{}\"}}",
            events.len(),
            head.to_hex()
        )
    };
    // Three streams grow over several commits; each commit updates the stream's summary.
    for round in 0..3_usize {
        for (index, name) in ["incident:r-a", "incident:r-b", "incident:r-c"]
            .iter()
            .enumerate()
        {
            if round + index < 2 {
                continue;
            }
            let existing = all_events(&store, name).await;
            let new = next_events(name, existing.last(), 1 + index, "rebuild");
            let mut after = existing.clone();
            after.extend(new.clone());
            let version = after.len() as u64;
            let expected = if existing.is_empty() {
                None
            } else {
                Some(existing.len() as u64)
            };
            let commit = Commit {
                events: new,
                projections: vec![put(
                    projection(kind, name, version, &summary(&after)),
                    expected,
                )],
                ..Commit::default()
            };
            ok(store.commit(commit).await, "events with their summary");
        }
    }
    let stored = all_projections(&store, kind, 2).await;
    let mut rebuilt = Vec::new();
    for stream in all_streams(&store, 2).await {
        let events = all_events(&store, &stream).await;
        assert!(verify_stream(&stream, &events).is_ok(), "{stream} verifies");
        rebuilt.push(projection(
            kind,
            &stream,
            events.len() as u64,
            &summary(&events),
        ));
    }
    rebuilt.sort_by(|left, right| left.key.cmp(&right.key));
    assert_eq!(
        stored, rebuilt,
        "projections equal their rebuild from events"
    );

    for existing in &stored {
        ok(
            change(&store, delete(kind, &existing.key, existing.version)).await,
            "drop",
        );
    }
    assert_eq!(all_projections(&store, kind, 2).await, Vec::new());
    for projection in &rebuilt {
        ok(
            change(&store, put(projection.clone(), None)).await,
            "rebuild",
        );
    }
    assert_eq!(
        all_projections(&store, kind, 2).await,
        stored,
        "rebuild restores them"
    );
}

// ---------------------------------------------------------------------------------------
// Racing writers.
// ---------------------------------------------------------------------------------------

/// [`RACING_WRITERS`] writers append sequence 1 of one stream at once: one wins, the rest
/// get `StreamMoved`, and the stream holds the winner's event only.
pub async fn racing_first_appends_one_wins<H: StoreHarness>(harness: &H) {
    let store = harness.fresh().await;
    let stream = "signal:contended";
    let events: Vec<EventEnvelope> = (0..RACING_WRITERS)
        .map(|writer| first_event(stream, &format!("writer {writer}")))
        .collect();
    let commits = events
        .iter()
        .map(|event| events_commit(vec![event.clone()]))
        .collect();
    let (winner, conflicts) = one_winner(race(harness, &store, commits).await, "first appends");
    for refused in conflicts {
        assert_stream_moved(refused, stream, 1, "a losing append");
    }
    assert_eq!(
        all_events(&store, stream).await,
        vec![events[winner].clone()]
    );
}

/// [`RACING_WRITERS`] promotions for one service race, each opening its own incident and
/// creating the service's open-incident pointer with `expected_version: None`: exactly one
/// incident exists afterwards.
pub async fn racing_pointer_projection_creates_one_wins<H: StoreHarness>(harness: &H) {
    let store = harness.fresh().await;
    let pointer = ("open_incident", "prod/orders");
    let incidents: Vec<String> = (0..RACING_WRITERS)
        .map(|writer| format!("incident:race-{writer:02}"))
        .collect();
    let commits = incidents
        .iter()
        .map(|incident| Commit {
            events: vec![first_event(incident, "IncidentOpened")],
            projections: vec![put(
                projection(
                    pointer.0,
                    pointer.1,
                    1,
                    &format!("{{\"id\":\"{incident}\"}}"),
                ),
                None,
            )],
            ..Commit::default()
        })
        .collect();
    let (winner, conflicts) = one_winner(race(harness, &store, commits).await, "promotions");
    for refused in conflicts {
        assert_projection_conflict(refused, pointer, None, Some(1), "a losing promotion");
    }
    let stored = ok(store.projection(pointer.0, pointer.1).await, "pointer").expect("a pointer");
    assert_eq!(
        stored.document,
        format!("{{\"id\":\"{}\"}}", incidents[winner]).into_bytes()
    );
    let streams = all_streams(&store, 50).await;
    assert_eq!(
        streams,
        vec![incidents[winner].clone()],
        "only the winner's incident exists"
    );
}

/// [`RACING_WRITERS`] deliveries of one request race on one idempotency key: one wins, the
/// rest get `IdempotencyKeyUsed` with the winner's record, and only the winner's events
/// exist.
pub async fn racing_idempotency_keys_one_wins<H: StoreHarness>(harness: &H) {
    let store = harness.fresh().await;
    let key = "ingest/signal:storm";
    let commits = (0..RACING_WRITERS)
        .map(|writer| Commit {
            events: vec![first_event(&format!("delivery:{writer:02}"), "delivered")],
            idempotency: vec![record(key, "one alarm payload")],
            ..Commit::default()
        })
        .collect();
    let (winner, conflicts) = one_winner(race(harness, &store, commits).await, "deliveries");
    for refused in conflicts {
        match refused {
            Conflict::IdempotencyKeyUsed { existing } => {
                assert_eq!(existing, record(key, "one alarm payload"));
            }
            other => panic!("a losing delivery: expected IdempotencyKeyUsed, got {other:?}"),
        }
    }
    let streams = all_streams(&store, 50).await;
    assert_eq!(
        streams,
        vec![format!("delivery:{winner:02}")],
        "losers wrote nothing"
    );
}

/// [`RACING_WRITERS`] writers append to different streams at once: none of them conflicts.
pub async fn racing_appends_to_different_streams_all_succeed<H: StoreHarness>(harness: &H) {
    let store = harness.fresh().await;
    let events: Vec<EventEnvelope> = (0..RACING_WRITERS)
        .map(|writer| first_event(&format!("signal:own-{writer:02}"), "own stream"))
        .collect();
    let commits = events
        .iter()
        .map(|event| events_commit(vec![event.clone()]))
        .collect();
    for (writer, outcome) in race(harness, &store, commits).await.into_iter().enumerate() {
        ok(outcome, &format!("writer {writer} on its own stream"));
    }
    for event in &events {
        assert_eq!(
            all_events(&store, &event.stream_id).await,
            vec![event.clone()]
        );
    }
}
