//! The one ingest entry (`opx_app::ingest::ingest_payload`) over a real SQLite store:
//! items numbered from 1 with 0 kept for the whole payload, bad items recorded as rejects
//! while their neighbours are recorded, a redelivery that changes nothing, conflicts and
//! transient store failures reported on their items.

use opx_app::ingest::{
    ingest_payload, IngestPolicy, IngestReport, ItemOutcome, Payload, PayloadRefusal, WHOLE_PAYLOAD,
};
use opx_app::pipeline::{Pipeline, PipelineConfig};
use opx_app::ports::{
    reject_id, Commit, IdempotencyRecord, NoPublisher, Page, Projection, RejectRecord, Store,
    StoreError, StoreRead, WorkItem,
};
use opx_domain::event::{EventEnvelope, EventPointer};
use opx_domain::hash::Digest;
use opx_domain::rules::RuleSet;
use opx_domain::signal::SourceKind;
use opx_store_sqlite::{SqliteOptions, SqliteStore};
use std::sync::atomic::{AtomicBool, Ordering};
use tempfile::TempDir;

const ORIGIN: &str = "test:ingest";

fn config() -> PipelineConfig {
    PipelineConfig::with_rule_files(RuleSet::default_rule_files()).expect("the default rules")
}

fn fresh() -> (TempDir, SqliteStore) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store =
        SqliteStore::open(dir.path().join("opx.db"), SqliteOptions::default()).expect("a store");
    (dir, store)
}

/// One firing Alertmanager alert; `None` leaves out `alertname`, which refuses it.
fn alert(name: Option<&str>, fingerprint: &str, environment: Option<&str>) -> String {
    let name = name.map_or(String::new(), |name| format!(r#""alertname": "{name}", "#));
    let environment = environment.map_or(String::new(), |env| format!(r#", "env": "{env}""#));
    format!(
        r#"{{"status": "firing", "labels": {{{name}"service": "payments", "severity": "critical"{environment}}},
            "annotations": {{"summary": "payments errors"}}, "startsAt": "2026-11-24T03:02:05.118Z",
            "endsAt": "0001-01-01T00:00:00Z", "fingerprint": "{fingerprint}"}}"#
    )
}

fn webhook(alerts: &[String]) -> Vec<u8> {
    format!(
        r#"{{"version": "4", "status": "firing", "receiver": "opx", "alerts": [{}]}}"#,
        alerts.join(", ")
    )
    .into_bytes()
}

async fn ingest<S: Store>(
    store: &S,
    config: &PipelineConfig,
    policy: &IngestPolicy,
    bytes: &[u8],
) -> IngestReport {
    let pipeline = Pipeline::new(store, &NoPublisher, config);
    ingest_payload(&pipeline, policy, Payload::new(ORIGIN, bytes)).await
}

async fn rejects<S: StoreRead>(store: &S) -> Vec<RejectRecord> {
    store.list_rejects(None, 100).await.expect("rejects").items
}

async fn streams<S: StoreRead>(store: &S) -> Vec<String> {
    store.list_streams(None, 100).await.expect("streams").items
}

fn kinds(report: &IngestReport) -> Vec<(u64, &'static str)> {
    report
        .items
        .iter()
        .map(|item| {
            let kind = match &item.outcome {
                ItemOutcome::Accepted(_) => "accepted",
                ItemOutcome::Duplicate(_) => "duplicate",
                ItemOutcome::Conflict { .. } => "conflict",
                ItemOutcome::Refused(_) => "refused",
                ItemOutcome::Failed { .. } => "failed",
            };
            (item.index, kind)
        })
        .collect()
}

fn ids(records: &[RejectRecord]) -> Vec<Digest> {
    let mut ids: Vec<Digest> = records.iter().map(|record| record.id).collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn every_item_of_a_mixed_payload_is_handled_and_numbered_from_one() {
    let (_dir, store) = fresh();
    let config = config();
    let bytes = webhook(&[
        alert(None, "0000000000000001", None),
        alert(Some("PaymentsHighErrorRate"), "0000000000000002", None),
        alert(None, "0000000000000003", None),
        alert(Some("PaymentsQueueBacklog"), "0000000000000004", None),
    ]);
    let report = ingest(&store, &config, &IngestPolicy::EVERY_KIND, &bytes).await;
    assert_eq!(report.source, Some(SourceKind::Alertmanager));
    assert_eq!(report.refused, None);
    assert_eq!(
        kinds(&report),
        vec![
            (1, "refused"),
            (2, "accepted"),
            (3, "refused"),
            (4, "accepted")
        ]
    );
    assert!(!report.incomplete());
    // The refusal names the item's own field, and is the reject recorded for it.
    let first = &report.items[0];
    let rejection = first.reject.as_ref().expect("the first alert is refused");
    assert!(rejection.field.starts_with("alerts[0]"), "{rejection}");
    assert!(first.reject_error.is_none());

    // One reject per bad item, each with its item's id; none is the whole payload's.
    let stored = rejects(&store).await;
    assert_eq!(stored.len(), 2, "{stored:?}");
    let mut expected = vec![reject_id(&bytes, 1), reject_id(&bytes, 3)];
    expected.sort();
    assert_eq!(ids(&stored), expected);
    assert!(!ids(&stored).contains(&reject_id(&bytes, WHOLE_PAYLOAD)));
    assert!(stored.iter().all(|record| record.origin == ORIGIN));
    let first_reject = stored
        .iter()
        .find(|record| record.id == reject_id(&bytes, 1))
        .expect("the first alert's reject");
    assert_eq!(first_reject.field, rejection.field);
    assert_eq!(first_reject.reason, rejection.reason);
    // The two valid alerts are recorded.
    assert_eq!(streams(&store).await.len(), 2);
}

#[tokio::test]
async fn a_redelivery_is_duplicates_and_the_same_rejects() {
    let (_dir, store) = fresh();
    let config = config();
    let bytes = webhook(&[
        alert(Some("PaymentsHighErrorRate"), "0000000000000002", None),
        alert(None, "0000000000000003", None),
    ]);
    let first = ingest(&store, &config, &IngestPolicy::EVERY_KIND, &bytes).await;
    assert_eq!(kinds(&first), vec![(1, "accepted"), (2, "refused")]);
    let rejects_before = rejects(&store).await;
    let streams_before = streams(&store).await;

    let again = ingest(&store, &config, &IngestPolicy::EVERY_KIND, &bytes).await;
    assert_eq!(kinds(&again), vec![(1, "duplicate"), (2, "refused")]);
    assert_eq!(rejects(&store).await, rejects_before);
    assert_eq!(streams(&store).await, streams_before);
}

#[tokio::test]
async fn a_payload_refused_whole_is_one_reject_at_index_zero() {
    let (_dir, store) = fresh();
    let config = config();
    let bytes = b"{\"version\":".to_vec();
    let report = ingest(&store, &config, &IngestPolicy::EVERY_KIND, &bytes).await;
    assert_eq!(report.refused, Some(PayloadRefusal::Unreadable));
    assert_eq!(report.source, None);
    assert_eq!(kinds(&report), vec![(WHOLE_PAYLOAD, "refused")]);
    assert_eq!(
        ids(&rejects(&store).await),
        vec![reject_id(&bytes, WHOLE_PAYLOAD)]
    );

    // A reader that kept only part of an oversized payload still reports its real size.
    let (_dir, store) = fresh();
    let payload = Payload {
        origin: ORIGIN,
        bytes: b"{}",
        len: opx_domain::source::PAYLOAD_LEN_MAX + 7,
    };
    let pipeline = Pipeline::new(&store, &NoPublisher, &config);
    let report = ingest_payload(&pipeline, &IngestPolicy::EVERY_KIND, payload).await;
    assert_eq!(report.refused, Some(PayloadRefusal::Unreadable));
    let reason = &report.items[0].reject.as_ref().expect("refused").reason;
    assert!(
        reason.contains(&(opx_domain::source::PAYLOAD_LEN_MAX + 7).to_string()),
        "{reason}"
    );
}

fn native_only(kind: SourceKind) -> Result<(), String> {
    match kind {
        SourceKind::Native => Ok(()),
        other => Err(format!("{other} enters elsewhere")),
    }
}

#[tokio::test]
async fn a_kind_the_entry_does_not_take_is_refused_whole_and_nothing_is_recorded() {
    let (_dir, store) = fresh();
    let config = config();
    let bytes = webhook(&[alert(
        Some("PaymentsHighErrorRate"),
        "0000000000000002",
        None,
    )]);
    let policy = IngestPolicy {
        takes: native_only,
        ..IngestPolicy::EVERY_KIND
    };
    let report = ingest(&store, &config, &policy, &bytes).await;
    assert_eq!(report.refused, Some(PayloadRefusal::KindNotTaken));
    assert_eq!(report.source, Some(SourceKind::Alertmanager));
    assert_eq!(kinds(&report), vec![(WHOLE_PAYLOAD, "refused")]);
    let stored = rejects(&store).await;
    assert_eq!(ids(&stored), vec![reject_id(&bytes, WHOLE_PAYLOAD)]);
    assert_eq!(stored[0].reason, "alertmanager enters elsewhere");
    assert!(streams(&store).await.is_empty());
}

#[tokio::test]
async fn a_conflicting_redelivery_is_refused_and_recorded_as_its_items_reject() {
    let (_dir, store) = fresh();
    let config = config();
    // Without an `env` label the environment comes from the configuration, so the same
    // alert under another default environment is the same signal with other content.
    let bytes = webhook(&[
        alert(
            Some("PaymentsQueueBacklog"),
            "0000000000000004",
            Some("prod"),
        ),
        alert(Some("PaymentsHighErrorRate"), "0000000000000002", None),
    ]);
    let first = ingest(&store, &config, &IngestPolicy::EVERY_KIND, &bytes).await;
    assert_eq!(kinds(&first), vec![(1, "accepted"), (2, "accepted")]);
    let mut moved = config.clone();
    moved.source.default_environment = format!("{}-moved", config.source.default_environment);
    let again = ingest(&store, &moved, &IngestPolicy::EVERY_KIND, &bytes).await;
    assert_eq!(kinds(&again), vec![(1, "duplicate"), (2, "conflict")]);
    assert!(again.items[1].reject.is_some());
    assert_eq!(ids(&rejects(&store).await), vec![reject_id(&bytes, 2)]);
}

/// SQLite whose commits fail as "unavailable" while `commits_down` is set; rejects are
/// still recorded.
struct CommitsDown {
    inner: SqliteStore,
    commits_down: AtomicBool,
}

impl StoreRead for CommitsDown {
    async fn read_stream(
        &self,
        stream_id: &str,
        from_sequence: u64,
        limit: usize,
    ) -> Result<Vec<EventEnvelope>, StoreError> {
        self.inner
            .read_stream(stream_id, from_sequence, limit)
            .await
    }
    async fn stream_head(&self, stream_id: &str) -> Result<Option<EventEnvelope>, StoreError> {
        self.inner.stream_head(stream_id).await
    }
    async fn list_streams(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<String>, StoreError> {
        self.inner.list_streams(cursor, limit).await
    }
    async fn idempotency(&self, key: &str) -> Result<Option<IdempotencyRecord>, StoreError> {
        self.inner.idempotency(key).await
    }
    async fn list_idempotency(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<IdempotencyRecord>, StoreError> {
        self.inner.list_idempotency(cursor, limit).await
    }
    async fn projection(&self, kind: &str, key: &str) -> Result<Option<Projection>, StoreError> {
        self.inner.projection(kind, key).await
    }
    async fn list_projections(
        &self,
        kind: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Projection>, StoreError> {
        self.inner.list_projections(kind, cursor, limit).await
    }
    async fn pending_work(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<WorkItem>, StoreError> {
        self.inner.pending_work(cursor, limit).await
    }
    async fn list_rejects(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<RejectRecord>, StoreError> {
        self.inner.list_rejects(cursor, limit).await
    }
}

impl Store for CommitsDown {
    async fn commit(&self, commit: Commit) -> Result<Vec<EventPointer>, StoreError> {
        if self.commits_down.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable {
                message: "commits are down".to_owned(),
                source: None,
            });
        }
        self.inner.commit(commit).await
    }
    async fn record_reject(&self, reject: RejectRecord) -> Result<(), StoreError> {
        self.inner.record_reject(reject).await
    }
}

#[tokio::test]
async fn a_transient_failure_is_reported_on_its_item_and_a_resend_records_it() {
    let (_dir, inner) = fresh();
    let store = CommitsDown {
        inner,
        commits_down: AtomicBool::new(true),
    };
    let config = config();
    let bytes = webhook(&[
        alert(None, "0000000000000001", None),
        alert(Some("PaymentsHighErrorRate"), "0000000000000002", None),
    ]);
    let policy = IngestPolicy {
        attempts_max: 3,
        backoff_ms: 1,
        ..IngestPolicy::EVERY_KIND
    };
    let report = ingest(&store, &config, &policy, &bytes).await;
    assert_eq!(kinds(&report), vec![(1, "refused"), (2, "failed")]);
    assert!(report.incomplete());
    match &report.items[1].outcome {
        ItemOutcome::Failed { error, .. } => assert!(error.is_transient(), "{error}"),
        other => panic!("expected a failure, got {other:?}"),
    }
    // A transient failure is no refusal: only the bad alert is a reject.
    assert!(report.items[1].reject.is_none());
    assert_eq!(ids(&rejects(&store).await), vec![reject_id(&bytes, 1)]);
    assert!(streams(&store).await.is_empty());

    store.commits_down.store(false, Ordering::SeqCst);
    let resent = ingest(&store, &config, &policy, &bytes).await;
    assert_eq!(kinds(&resent), vec![(1, "refused"), (2, "accepted")]);
    assert!(!resent.incomplete());
    assert_eq!(rejects(&store).await.len(), 1);
}
