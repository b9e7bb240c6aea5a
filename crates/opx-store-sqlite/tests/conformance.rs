//! The store conformance suite on SQLite, plus what only SQLite has: migrations, pragmas,
//! close and reopen, group commit, and the busy timeout.

use opx_app::conformance::StoreHarness;
use opx_app::ports::{
    Commit, Conflict, IdempotencyRecord, Projection, ProjectionChange, RejectRecord, Stage, Store,
    StoreError, StoreRead, WorkItem, COMMIT_WRITES_MAX,
};
use opx_domain::event::{verify_stream, EventEnvelope};
use opx_domain::hash::Digest;
use opx_store_sqlite::{
    OpenError, SqliteOptions, SqliteStore, Synchronous, APPLICATION_ID, SCHEMA_VERSION,
};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use tempfile::TempDir;

/// Each store lives in its own temporary directory, removed when the test's harness is
/// dropped (after the case, and every handle it opened, has finished).
struct SqliteHarness {
    directories: Mutex<Vec<TempDir>>,
}

impl SqliteHarness {
    fn new() -> SqliteHarness {
        SqliteHarness {
            directories: Mutex::new(Vec::new()),
        }
    }
}

impl StoreHarness for SqliteHarness {
    type Store = SqliteStore;

    async fn fresh(&self) -> SqliteStore {
        let directory = tempfile::tempdir().expect("a temporary directory");
        let store = SqliteStore::open(directory.path().join("opx.db"), SqliteOptions::default())
            .expect("a fresh store opens");
        self.directories
            .lock()
            .expect("the harness lock")
            .push(directory);
        store
    }

    async fn another_handle(&self, store: &SqliteStore) -> SqliteStore {
        store.reopen().expect("a second connection opens")
    }
}

opx_app::store_conformance_suite!(SqliteHarness::new());

// ---------------------------------------------------------------------------------------
// SQLite only.
// ---------------------------------------------------------------------------------------

fn run(test: impl std::future::Future<Output = ()>) {
    opx_app::conformance::run_case(test);
}

fn temp_store_path() -> (TempDir, PathBuf) {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let path = directory.path().join("opx.db");
    (directory, path)
}

fn open(path: &Path) -> SqliteStore {
    SqliteStore::open(path, SqliteOptions::default()).expect("the store opens")
}

fn raw(path: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).expect("a raw connection")
}

fn chain(stream: &str, count: u64) -> Vec<EventEnvelope> {
    let mut previous = Digest::ZERO;
    (1..=count)
        .map(|sequence| {
            let payload = format!("{{\"n\":{sequence}}}").into_bytes();
            let event =
                EventEnvelope::seal(stream, sequence, "ConformanceChecked", 1, payload, previous);
            previous = event.hash;
            event
        })
        .collect()
}

fn record(key: &str) -> IdempotencyRecord {
    IdempotencyRecord {
        key: key.to_string(),
        request_hash: Digest::of_bytes(key.as_bytes()),
        response: b"{}".to_vec(),
    }
}

fn create(kind: &str, key: &str, document: &str) -> ProjectionChange {
    ProjectionChange::Put {
        projection: Projection {
            kind: kind.to_string(),
            key: key.to_string(),
            version: 1,
            document: document.as_bytes().to_vec(),
        },
        expected_version: None,
    }
}

fn events(events: Vec<EventEnvelope>) -> Commit {
    Commit {
        events,
        ..Commit::default()
    }
}

fn table_names(path: &Path) -> Vec<String> {
    let connection = raw(path);
    let mut statement = connection
        .prepare(
            "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
             ORDER BY name",
        )
        .expect("the schema query prepares");
    statement
        .query_map([], |row| row.get(0))
        .and_then(|rows| rows.collect::<Result<_, _>>())
        .expect("the schema is readable")
}

fn wal_len(path: &Path) -> u64 {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    std::fs::metadata(PathBuf::from(wal)).map_or(0, |metadata| metadata.len())
}

#[test]
fn a_fresh_file_gets_the_schema_and_the_pragmas() {
    let (_directory, path) = temp_store_path();
    let store = open(&path);
    let settings = store.effective_settings().unwrap();
    assert_eq!(settings.journal_mode, "wal");
    assert_eq!(settings.synchronous_level, 1, "NORMAL by default");
    assert!(settings.foreign_keys);
    assert_eq!(settings.busy_timeout_ms, 5_000);
    assert_eq!(settings.schema_version, i64::from(SCHEMA_VERSION));
    assert_eq!(settings.application_id, APPLICATION_ID);
    assert_eq!(
        table_names(&path),
        ["events", "idempotency", "projections", "rejects", "work"]
    );
}

#[test]
fn full_synchronous_and_the_busy_timeout_are_applied() {
    let (_directory, path) = temp_store_path();
    let options = SqliteOptions {
        synchronous: Synchronous::Full,
        busy_timeout_ms: 1_234,
    };
    let store = SqliteStore::open(&path, options).unwrap();
    let settings = store.effective_settings().unwrap();
    assert_eq!(settings.synchronous_level, 2, "FULL");
    assert_eq!(settings.busy_timeout_ms, 1_234);
    assert_eq!(
        store.reopen().unwrap().effective_settings().unwrap(),
        settings
    );
}

#[test]
fn reopening_migrates_nothing_and_init_is_idempotent() {
    run(async {
        let (_directory, path) = temp_store_path();
        let store = open(&path);
        store.commit(events(chain("signal:a", 2))).await.unwrap();
        store.init().await.unwrap();
        store.init().await.unwrap();
        store.close().unwrap();
        let reopened = open(&path);
        reopened.init().await.unwrap();
        assert_eq!(
            reopened.effective_settings().unwrap().schema_version,
            i64::from(SCHEMA_VERSION)
        );
        assert_eq!(
            reopened.read_stream("signal:a", 1, 10).await.unwrap(),
            chain("signal:a", 2)
        );
    });
}

#[test]
fn an_empty_sqlite_file_is_migrated() {
    let (_directory, path) = temp_store_path();
    // A file SQLite created with nothing in it (version 0, no tables) is a new store.
    raw(&path)
        .execute_batch("PRAGMA user_version = 0;")
        .unwrap();
    let store = open(&path);
    assert_eq!(
        store.effective_settings().unwrap().schema_version,
        i64::from(SCHEMA_VERSION)
    );
}

#[test]
fn a_file_from_a_newer_opx_is_refused() {
    let (_directory, path) = temp_store_path();
    open(&path).close().unwrap();
    raw(&path)
        .pragma_update(None, "user_version", i64::from(SCHEMA_VERSION) + 1)
        .unwrap();
    let error = SqliteStore::open(&path, SqliteOptions::default()).unwrap_err();
    match &error {
        OpenError::NewerSchema {
            found, supported, ..
        } => {
            assert_eq!(*found, i64::from(SCHEMA_VERSION) + 1);
            assert_eq!(*supported, SCHEMA_VERSION);
        }
        other => panic!("expected NewerSchema, got {other:?}"),
    }
    let message = error.to_string();
    assert!(message.contains("upgrade opx"), "{message}");
    assert!(
        message.contains(&format!("schema version {}", SCHEMA_VERSION + 1)),
        "{message}"
    );
    assert!(!error.is_transient());
    assert!(matches!(StoreError::from(error), StoreError::Corrupt(_)));
    // Refusing did not touch the file.
    let version: i64 = raw(&path)
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .unwrap();
    assert_eq!(version, i64::from(SCHEMA_VERSION) + 1);
}

#[test]
fn another_applications_sqlite_file_is_refused() {
    let (_directory, path) = temp_store_path();
    raw(&path)
        .execute_batch("CREATE TABLE customers (id INTEGER PRIMARY KEY);")
        .unwrap();
    let error = SqliteStore::open(&path, SqliteOptions::default()).unwrap_err();
    assert!(
        matches!(error, OpenError::NotAnOpxStore { .. }),
        "{error:?}"
    );
    assert_eq!(
        table_names(&path),
        ["customers"],
        "nothing was created in it"
    );

    let (_other_directory, other) = temp_store_path();
    raw(&other)
        .pragma_update(None, "application_id", 42)
        .unwrap();
    let error = SqliteStore::open(&other, SqliteOptions::default()).unwrap_err();
    assert!(
        matches!(
            error,
            OpenError::NotAnOpxStore {
                application_id: 42,
                ..
            }
        ),
        "{error:?}"
    );
}

#[test]
fn a_missing_directory_is_a_clear_error() {
    let (directory, _) = temp_store_path();
    let path = directory.path().join("no-such-directory").join("opx.db");
    let error = SqliteStore::open(&path, SqliteOptions::default()).unwrap_err();
    assert!(
        error.to_string().contains("does its directory exist"),
        "{error}"
    );
}

#[test]
fn a_closed_and_reopened_store_keeps_everything_and_verifies() {
    run(async {
        let (_directory, path) = temp_store_path();
        let store = open(&path);
        let streams = ["signal:one", "incident:two", "group:three"];
        for (index, stream) in streams.iter().enumerate() {
            let stream_events = chain(stream, 3 + index as u64);
            let commit = Commit {
                idempotency: vec![record(&format!("stage/detect/{stream}"))],
                projections: vec![create("summary", stream, "{\"ok\":true}")],
                work_added: vec![WorkItem {
                    stage: Stage::Detect,
                    input: stream_events[0].pointer(),
                }],
                events: stream_events,
                ..Commit::default()
            };
            store.commit(commit).await.unwrap();
        }
        let reject = RejectRecord {
            id: Digest::of_bytes(b"bad"),
            origin: "alarms.ndjson:3".into(),
            field: "$".into(),
            reason: "not JSON".into(),
            excerpt: "{\"trunc".into(),
        };
        store.record_reject(reject.clone()).await.unwrap();
        assert!(wal_len(&path) > 0, "commits went to the write-ahead log");
        store.close().unwrap();
        assert_eq!(
            wal_len(&path),
            0,
            "close checkpointed the log into the database"
        );

        let reopened = open(&path);
        let listed = reopened.list_streams(None, 10).await.unwrap();
        assert_eq!(listed.items.len(), 3);
        for (index, stream) in streams.iter().enumerate() {
            let read = reopened.read_stream(stream, 1, 100).await.unwrap();
            assert_eq!(read, chain(stream, 3 + index as u64));
            assert!(verify_stream(stream, &read).is_ok());
            assert!(reopened
                .idempotency(&format!("stage/detect/{stream}"))
                .await
                .unwrap()
                .is_some());
            assert!(reopened
                .projection("summary", stream)
                .await
                .unwrap()
                .is_some());
        }
        assert_eq!(
            reopened.pending_work(None, 10).await.unwrap().items.len(),
            3
        );
        assert_eq!(
            reopened.list_rejects(None, 10).await.unwrap().items,
            vec![reject]
        );
    });
}

#[test]
fn dropping_a_store_checkpoints_too() {
    run(async {
        let (_directory, path) = temp_store_path();
        let store = open(&path);
        store
            .commit(events(chain("signal:dropped", 5)))
            .await
            .unwrap();
        assert!(wal_len(&path) > 0);
        drop(store);
        assert_eq!(wal_len(&path), 0);
        assert_eq!(
            open(&path)
                .read_stream("signal:dropped", 1, 10)
                .await
                .unwrap()
                .len(),
            5
        );
    });
}

#[test]
fn group_commit_rolls_back_only_the_refused_commits() {
    run(async {
        let (_directory, path) = temp_store_path();
        let store = open(&path);
        let existing = chain("incident:existing", 1);
        store.commit(events(existing.clone())).await.unwrap();

        let grown = chain("incident:grown", 2);
        let over_limit = Commit {
            idempotency: (0..=COMMIT_WRITES_MAX)
                .map(|i| record(&format!("k/{i}")))
                .collect(),
            ..Commit::default()
        };
        let outcomes = store
            .commit_many(vec![
                // 0: a new stream, its key and a pointer projection.
                Commit {
                    events: vec![grown[0].clone()],
                    idempotency: vec![record("batch/0")],
                    projections: vec![create("open_incident", "prod/orders", "{\"id\":0}")],
                    ..Commit::default()
                },
                // 1: a rival first event of a stored stream, with writes of its own.
                Commit {
                    events: vec![
                        chain("signal:side-effect", 1)[0].clone(),
                        EventEnvelope::seal(
                            "incident:existing",
                            1,
                            "Rival",
                            1,
                            b"{}".to_vec(),
                            Digest::ZERO,
                        ),
                    ],
                    idempotency: vec![record("batch/1")],
                    ..Commit::default()
                },
                // 2: continues the stream commit 0 started, in the same batch.
                events(vec![grown[1].clone()]),
                // 3: invalid.
                over_limit,
                // 4: the pointer commit 0 created in this batch is taken.
                Commit {
                    idempotency: vec![record("batch/4")],
                    projections: vec![create("open_incident", "prod/orders", "{\"id\":4}")],
                    ..Commit::default()
                },
                // 5: re-uses the key commit 0 recorded in this batch.
                Commit {
                    idempotency: vec![record("batch/0")],
                    ..Commit::default()
                },
            ])
            .await;
        assert_eq!(outcomes.len(), 6);
        assert_eq!(outcomes[0].as_ref().unwrap(), &vec![grown[0].pointer()]);
        assert!(matches!(
            &outcomes[1],
            Err(StoreError::Conflict(Conflict::StreamMoved {
                sequence: 1,
                ..
            }))
        ));
        assert_eq!(outcomes[2].as_ref().unwrap(), &vec![grown[1].pointer()]);
        assert!(matches!(&outcomes[3], Err(StoreError::Invalid(_))));
        assert!(matches!(
            &outcomes[4],
            Err(StoreError::Conflict(Conflict::ProjectionVersion {
                actual: Some(1),
                ..
            }))
        ));
        assert!(matches!(
            &outcomes[5],
            Err(StoreError::Conflict(Conflict::IdempotencyKeyUsed { .. }))
        ));

        assert_eq!(
            store.read_stream("incident:grown", 1, 10).await.unwrap(),
            grown
        );
        assert_eq!(
            store.read_stream("incident:existing", 1, 10).await.unwrap(),
            existing
        );
        assert_eq!(store.stream_head("signal:side-effect").await.unwrap(), None);
        assert!(store.idempotency("batch/0").await.unwrap().is_some());
        assert!(store.idempotency("batch/1").await.unwrap().is_none());
        assert!(store.idempotency("batch/4").await.unwrap().is_none());
        assert!(store.idempotency("k/0").await.unwrap().is_none());
        let pointer = store
            .projection("open_incident", "prod/orders")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(pointer.document, b"{\"id\":0}");

        assert!(store.commit_many(Vec::new()).await.is_empty());
    });
}

#[test]
fn group_commit_is_seen_by_another_connection_only_when_whole() {
    run(async {
        let (_directory, path) = temp_store_path();
        let store = open(&path);
        let other = store.reopen().unwrap();
        let commits: Vec<Commit> = (0..20)
            .map(|i| events(chain(&format!("signal:{i:02}"), 2)))
            .collect();
        let outcomes = store.commit_many(commits).await;
        assert!(outcomes.iter().all(Result::is_ok));
        assert_eq!(other.list_streams(None, 100).await.unwrap().items.len(), 20);
    });
}

#[test]
fn a_writer_blocked_beyond_the_busy_timeout_gets_a_transient_error() {
    run(async {
        let (_directory, path) = temp_store_path();
        let options = SqliteOptions {
            busy_timeout_ms: 50,
            ..SqliteOptions::default()
        };
        let store = SqliteStore::open(&path, options).unwrap();
        let blocker = raw(&path);
        blocker.execute_batch("BEGIN IMMEDIATE;").unwrap();
        let error = store
            .commit(events(chain("signal:blocked", 1)))
            .await
            .unwrap_err();
        assert!(error.is_transient(), "{error:?}");
        assert!(
            std::error::Error::source(&error).is_some(),
            "the SQLite error is kept as the source"
        );
        let outcomes = store
            .commit_many(vec![events(chain("signal:blocked", 1))])
            .await;
        assert!(outcomes[0].as_ref().is_err_and(StoreError::is_transient));
        blocker.execute_batch("ROLLBACK;").unwrap();
        store
            .commit(events(chain("signal:blocked", 1)))
            .await
            .unwrap();
    });
}

#[test]
fn work_for_an_event_that_is_not_stored_is_invalid() {
    run(async {
        let (_directory, path) = temp_store_path();
        let store = open(&path);
        let event = chain("signal:unstored", 1).remove(0);
        let commit = Commit {
            work_added: vec![WorkItem {
                stage: Stage::Detect,
                input: event.pointer(),
            }],
            ..Commit::default()
        };
        assert!(matches!(
            store.commit(commit).await,
            Err(StoreError::Invalid(_))
        ));
        store.commit(events(vec![event.clone()])).await.unwrap();
        let mut wrong_hash = event.pointer();
        wrong_hash.hash = Digest::of_bytes(b"another event");
        let commit = Commit {
            work_added: vec![WorkItem {
                stage: Stage::Detect,
                input: wrong_hash,
            }],
            ..Commit::default()
        };
        assert!(matches!(
            store.commit(commit).await,
            Err(StoreError::Invalid(_))
        ));
        assert!(store.pending_work(None, 10).await.unwrap().items.is_empty());
    });
}

#[test]
fn a_zero_limit_is_invalid() {
    run(async {
        let (_directory, path) = temp_store_path();
        let store = open(&path);
        assert!(matches!(
            store.read_stream("s", 1, 0).await,
            Err(StoreError::Invalid(_))
        ));
        assert!(matches!(
            store.list_streams(None, 0).await,
            Err(StoreError::Invalid(_))
        ));
        assert!(matches!(
            store.pending_work(None, 0).await,
            Err(StoreError::Invalid(_))
        ));
    });
}

#[test]
fn a_page_ends_without_a_cursor_when_nothing_follows() {
    run(async {
        let (_directory, path) = temp_store_path();
        let store = open(&path);
        for i in 0..4 {
            store
                .commit(events(chain(&format!("signal:{i}"), 1)))
                .await
                .unwrap();
        }
        let first = store.list_streams(None, 2).await.unwrap();
        assert_eq!(first.items, ["signal:0", "signal:1"]);
        let second = store.list_streams(first.next.as_deref(), 2).await.unwrap();
        assert_eq!(second.items, ["signal:2", "signal:3"]);
        assert_eq!(
            second.next, None,
            "exactly full last page: no empty extra page"
        );
        let cursor = first.next.unwrap();
        assert!(
            store.list_rejects(Some(&cursor), 2).await.is_err(),
            "a cursor is bound to its list"
        );
    });
}
