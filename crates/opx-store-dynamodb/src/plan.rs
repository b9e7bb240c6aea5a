//! From a [`Commit`] to one `TransactWriteItems` request: validation, the actions and the
//! condition on each, and the record of which action stands for which write (so that a
//! cancellation reason, reported by position, maps back to a typed conflict).
//!
//! Everything here is pure: no request is sent, so every limit is checked before DynamoDB
//! sees anything.

use crate::items::{
    self, attribute, kind, EventItem, EventKey, IdempotencyItem, Item, ProjectionItem,
    ProjectionKey, StreamItem, INTERNAL_KIND_PREFIX, ITEM_FORMAT,
};
use crate::{TableNames, ITEM_LEN_MAX, TRANSACTION_ACTIONS_MAX, TRANSACTION_LEN_MAX};
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, Delete, Put, ReturnValuesOnConditionCheckFailure,
    TransactWriteItem, Update,
};
pub(crate) use opx_app::ports::{check_key, shorten};
use opx_app::ports::{Commit, ProjectionChange, StoreError};
use opx_domain::event::{EventEnvelope, EventPointer};
use opx_domain::hash::Digest;
use std::collections::{BTreeMap, BTreeSet};

/// What one action of the transaction stands for: how to read its cancellation reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// The put of an event (or, in a check-only plan, the check that its key is free).
    /// A failed condition: the sequence is taken.
    EventPut { stream_id: String, sequence: u64 },
    /// The check that the event before `sequence` exists with the event's previous hash.
    /// A failed condition: a gap or a wrong previous hash.
    EventLink { stream_id: String, sequence: u64 },
    /// The put of the `~stream` registry item with a stream's first event.
    StreamRegistered { stream_id: String },
    /// The check that the event a work item points at is stored with that hash.
    WorkEventCheck {
        work_key: String,
        stream_id: String,
        sequence: u64,
    },
    /// The put of an idempotency record.
    Idempotency { key: String },
    /// A guarded projection put or delete.
    Projection {
        kind: String,
        key: String,
        expected: Option<u64>,
    },
    /// An unconditional work change (add or done): it cannot fail a condition.
    Work { key: String },
}

/// One transaction, ready to send.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    pub items: Vec<TransactWriteItem>,
    /// `actions[i]` is what `items[i]` stands for.
    pub actions: Vec<Action>,
    /// The aggregate size of the items, as DynamoDB counts it (an upper bound).
    pub len_bytes: usize,
}

impl Plan {
    fn new() -> Plan {
        Plan {
            items: Vec::new(),
            actions: Vec::new(),
            len_bytes: 0,
        }
    }

    fn push(&mut self, item: TransactWriteItem, action: Action, len_bytes: usize) {
        self.items.push(item);
        self.actions.push(action);
        self.len_bytes += len_bytes;
    }

    fn check_limits(&self) -> Result<(), StoreError> {
        let actions = self.items.len();
        if actions > TRANSACTION_ACTIONS_MAX {
            return Err(StoreError::Invalid(format!(
                "commit needs {actions} DynamoDB actions, more than TRANSACTION_ACTIONS_MAX \
                 ({TRANSACTION_ACTIONS_MAX}; a stream's first event in a commit takes two); \
                 split the step into smaller commits"
            )));
        }
        if self.len_bytes > TRANSACTION_LEN_MAX {
            return Err(StoreError::Invalid(format!(
                "commit writes {} bytes of items, more than TRANSACTION_LEN_MAX \
                 ({TRANSACTION_LEN_MAX}, DynamoDB's 4 MB per transaction); split the step \
                 into smaller commits",
                self.len_bytes
            )));
        }
        Ok(())
    }
}

/// What a commit becomes.
#[derive(Debug)]
pub(crate) enum Built {
    /// The whole commit as one transaction; the pointers to return on success.
    Whole {
        plan: Plan,
        pointers: Vec<EventPointer>,
    },
    /// The event `at` can never follow the events before it in the same commit (a first
    /// event that does not link to ZERO, or events of one stream out of order). The commit
    /// is refused with `StreamMoved` — at the first event before `at` that conflicts with
    /// the store (`checks` holds their conditions, as condition checks only, so sending it
    /// writes nothing), else at `at`. This is the answer a store that applies events one by
    /// one would give.
    Broken { checks: Plan, at: EventPointer },
}

/// Checks everything about a commit that does not depend on stored data: the ports'
/// [`Commit::validate`], and that no projection kind is one the store keeps for itself.
pub(crate) fn validate(commit: &Commit) -> Result<(), StoreError> {
    commit.validate()?;
    for change in &commit.projections {
        match change {
            ProjectionChange::Put { projection, .. } => check_kind(&projection.kind)?,
            ProjectionChange::Delete { kind, .. } => check_kind(kind)?,
        }
    }
    Ok(())
}

/// A caller's projection kind: a valid key that is not store-internal.
pub(crate) fn check_kind(kind: &str) -> Result<(), StoreError> {
    check_key("projection kind", kind)?;
    if kind.starts_with(INTERNAL_KIND_PREFIX) {
        return Err(invalid(format!(
            "projection kind {:?} starts with {INTERNAL_KIND_PREFIX:?}, which the DynamoDB store \
             keeps for its own items (~stream, ~work, ~reject); choose another kind",
            shorten(kind)
        )));
    }
    Ok(())
}

/// Builds the transaction for a validated, non-empty commit. `now_ms` is recorded on work
/// items added for the first time.
pub(crate) fn build(
    tables: &TableNames,
    commit: &Commit,
    now_ms: u64,
) -> Result<Built, StoreError> {
    if let Some(index) = first_broken_event(&commit.events) {
        let mut checks = Plan::new();
        event_actions(
            tables,
            &commit.events[..index],
            Mode::CheckOnly,
            &mut checks,
        )?;
        checks.check_limits()?;
        return Ok(Built::Broken {
            checks,
            at: commit.events[index].pointer(),
        });
    }
    let mut plan = Plan::new();
    let mut touched = event_actions(tables, &commit.events, Mode::Write, &mut plan)?;
    for record in &commit.idempotency {
        let item = items::to_item(
            &format!("idempotency record {}", record.key),
            &IdempotencyItem::from_record(record),
        )?;
        let len = checked_len(
            &format!("idempotency record {:?}", shorten(&record.key)),
            &item,
        )?;
        let put = Put::builder()
            .table_name(tables.idempotency())
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#key)")
            .expression_attribute_names("#key", attribute::KEY)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(built)?;
        plan.push(
            TransactWriteItem::builder().put(put).build(),
            Action::Idempotency {
                key: record.key.clone(),
            },
            len,
        );
    }
    for change in &commit.projections {
        projection_action(tables, change, &mut plan)?;
    }
    for work in &commit.work_added {
        let pointer = &work.input;
        let work_key = work.key();
        match touched.get(&(pointer.stream_id.clone(), pointer.sequence)) {
            Some(hash) if *hash == pointer.hash => {}
            Some(hash) => {
                return Err(invalid(format!(
                    "work item {work_key} points at {}#{} with hash {}, but this commit writes \
                     or links to that event with hash {hash}; take the pointer from the \
                     committed event",
                    pointer.stream_id, pointer.sequence, pointer.hash
                )));
            }
            None => {
                let key = event_key(&pointer.stream_id, pointer.sequence)?;
                let len = items::item_len(&key);
                let check = ConditionCheck::builder()
                    .table_name(tables.events())
                    .set_key(Some(key))
                    .condition_expression("#hash = :hash")
                    .expression_attribute_names("#hash", attribute::HASH)
                    .expression_attribute_values(":hash", items::to_value("hash", &pointer.hash)?)
                    .build()
                    .map_err(built)?;
                plan.push(
                    TransactWriteItem::builder().condition_check(check).build(),
                    Action::WorkEventCheck {
                        work_key: work_key.clone(),
                        stream_id: pointer.stream_id.clone(),
                        sequence: pointer.sequence,
                    },
                    len,
                );
                touched.insert((pointer.stream_id.clone(), pointer.sequence), pointer.hash);
            }
        }
        let key = projection_key(kind::WORK, &work_key)?;
        let values: [(&str, AttributeValue); 4] = [
            (":stage", items::to_value("work stage", &work.stage)?),
            (":input", items::to_value("work input", &work.input)?),
            (":format", items::to_value("format", &ITEM_FORMAT)?),
            (":added_at_ms", items::to_value("time", &now_ms)?),
        ];
        let len = items::item_len(&key)
            + values
                .iter()
                .map(|(name, value)| name.len() + items::item_len(&single(value)))
                .sum::<usize>();
        // An update rather than a put: adding an item that is pending already keeps the
        // time it was first added (`if_not_exists`), so re-adding is a true no-op.
        let mut update = Update::builder()
            .table_name(tables.projections())
            .set_key(Some(key))
            .update_expression(
                "SET #stage = :stage, #input = :input, #format = :format, \
                 #added_at_ms = if_not_exists(#added_at_ms, :added_at_ms)",
            )
            .expression_attribute_names("#stage", attribute::STAGE)
            .expression_attribute_names("#input", attribute::INPUT)
            .expression_attribute_names("#format", attribute::FORMAT)
            .expression_attribute_names("#added_at_ms", attribute::ADDED_AT_MS);
        for (name, value) in values {
            update = update.expression_attribute_values(name, value);
        }
        plan.push(
            TransactWriteItem::builder()
                .update(update.build().map_err(built)?)
                .build(),
            Action::Work { key: work_key },
            len,
        );
    }
    for work in &commit.work_done {
        let work_key = work.key();
        let key = projection_key(kind::WORK, &work_key)?;
        let len = items::item_len(&key);
        let delete = Delete::builder()
            .table_name(tables.projections())
            .set_key(Some(key))
            .build()
            .map_err(built)?;
        plan.push(
            TransactWriteItem::builder().delete(delete).build(),
            Action::Work { key: work_key },
            len,
        );
    }
    plan.check_limits()?;
    let pointers = commit.events.iter().map(EventEnvelope::pointer).collect();
    Ok(Built::Whole { plan, pointers })
}

/// The index of the first event that cannot follow the events before it in the commit,
/// whatever is stored: a first event (sequence 1) that does not link to ZERO, or an event
/// that does not continue the previous event of its stream in this commit.
fn first_broken_event(events: &[EventEnvelope]) -> Option<usize> {
    let mut heads: BTreeMap<&str, (u64, Digest)> = BTreeMap::new();
    for (index, event) in events.iter().enumerate() {
        let follows = match heads.get(event.stream_id.as_str()) {
            Some(&(sequence, hash)) => {
                event.sequence == sequence + 1 && event.previous_hash == hash
            }
            None => event.sequence > 1 || event.previous_hash == Digest::ZERO,
        };
        if !follows {
            return Some(index);
        }
        heads.insert(&event.stream_id, (event.sequence, event.hash));
    }
    None
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Put the events, with their conditions.
    Write,
    /// Only check the events' conditions (a commit that will be refused anyway).
    CheckOnly,
}

/// The actions for events that follow each other within the commit. Returns the event
/// items the transaction touches, with the hash each must have.
///
/// DynamoDB refuses two actions on one item in a transaction, so the chain rule is split:
/// - the first event of a stream in the commit carries the condition against the store —
///   at sequence 1 the `~stream` registry item must not exist; after that, a condition
///   check that the event before it exists with `hash = previous_hash` (which refuses a
///   taken head, a wrong link and a gap alike);
/// - later events of the same stream link to events written by this very transaction, which
///   was checked in memory ([`first_broken_event`]);
/// - every event put is guarded by `attribute_not_exists(stream_id)`, so a taken sequence
///   is refused whatever else happened.
fn event_actions(
    tables: &TableNames,
    events: &[EventEnvelope],
    mode: Mode,
    plan: &mut Plan,
) -> Result<BTreeMap<(String, u64), Digest>, StoreError> {
    let mut touched = BTreeMap::new();
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    for event in events {
        let first_in_commit = seen.insert(&event.stream_id);
        let name = format!("event {}#{}", event.stream_id, event.sequence);
        let put_action = Action::EventPut {
            stream_id: event.stream_id.clone(),
            sequence: event.sequence,
        };
        match mode {
            Mode::Write => {
                let item = items::to_item(&name, &EventItem::from_envelope(event))?;
                let len = checked_len(&name, &item)?;
                let put = Put::builder()
                    .table_name(tables.events())
                    .set_item(Some(item))
                    .condition_expression("attribute_not_exists(#stream_id)")
                    .expression_attribute_names("#stream_id", attribute::STREAM_ID)
                    .build()
                    .map_err(built)?;
                plan.push(
                    TransactWriteItem::builder().put(put).build(),
                    put_action,
                    len,
                );
            }
            Mode::CheckOnly => {
                let key = event_key(&event.stream_id, event.sequence)?;
                let len = items::item_len(&key);
                let check = ConditionCheck::builder()
                    .table_name(tables.events())
                    .set_key(Some(key))
                    .condition_expression("attribute_not_exists(#stream_id)")
                    .expression_attribute_names("#stream_id", attribute::STREAM_ID)
                    .build()
                    .map_err(built)?;
                plan.push(
                    TransactWriteItem::builder().condition_check(check).build(),
                    put_action,
                    len,
                );
            }
        }
        touched.insert((event.stream_id.clone(), event.sequence), event.hash);
        if !first_in_commit {
            continue;
        }
        if event.sequence == 1 {
            if mode == Mode::Write {
                let item = items::to_item(&name, &StreamItem::new(&event.stream_id))?;
                let len = checked_len(&format!("stream registry item of {name}"), &item)?;
                let put = Put::builder()
                    .table_name(tables.projections())
                    .set_item(Some(item))
                    .condition_expression("attribute_not_exists(#kind)")
                    .expression_attribute_names("#kind", attribute::KIND)
                    .build()
                    .map_err(built)?;
                plan.push(
                    TransactWriteItem::builder().put(put).build(),
                    Action::StreamRegistered {
                        stream_id: event.stream_id.clone(),
                    },
                    len,
                );
            }
        } else {
            let previous = event.sequence - 1;
            let key = event_key(&event.stream_id, previous)?;
            let len = items::item_len(&key);
            let check = ConditionCheck::builder()
                .table_name(tables.events())
                .set_key(Some(key))
                .condition_expression("#hash = :previous_hash")
                .expression_attribute_names("#hash", attribute::HASH)
                .expression_attribute_values(
                    ":previous_hash",
                    items::to_value("previous hash", &event.previous_hash)?,
                )
                .build()
                .map_err(built)?;
            plan.push(
                TransactWriteItem::builder().condition_check(check).build(),
                Action::EventLink {
                    stream_id: event.stream_id.clone(),
                    sequence: event.sequence,
                },
                len,
            );
            touched.insert((event.stream_id.clone(), previous), event.previous_hash);
        }
    }
    Ok(touched)
}

fn projection_action(
    tables: &TableNames,
    change: &ProjectionChange,
    plan: &mut Plan,
) -> Result<(), StoreError> {
    let return_old = ReturnValuesOnConditionCheckFailure::AllOld;
    match change {
        ProjectionChange::Put {
            projection,
            expected_version,
        } => {
            let name = format!("projection {}/{}", projection.kind, projection.key);
            let item = items::to_item(&name, &ProjectionItem::from_projection(projection))?;
            let len = checked_len(&name, &item)?;
            let put = Put::builder()
                .table_name(tables.projections())
                .set_item(Some(item))
                .return_values_on_condition_check_failure(return_old);
            let put = match expected_version {
                None => put
                    .condition_expression("attribute_not_exists(#kind)")
                    .expression_attribute_names("#kind", attribute::KIND),
                Some(expected) => put
                    .condition_expression("#version = :expected")
                    .expression_attribute_names("#version", attribute::VERSION)
                    .expression_attribute_values(
                        ":expected",
                        items::to_value("version", expected)?,
                    ),
            };
            plan.push(
                TransactWriteItem::builder()
                    .put(put.build().map_err(built)?)
                    .build(),
                Action::Projection {
                    kind: projection.kind.clone(),
                    key: projection.key.clone(),
                    expected: *expected_version,
                },
                len,
            );
        }
        ProjectionChange::Delete {
            kind,
            key,
            expected_version,
        } => {
            let item_key = projection_key(kind, key)?;
            let len = items::item_len(&item_key);
            let delete = Delete::builder()
                .table_name(tables.projections())
                .set_key(Some(item_key))
                .condition_expression("#version = :expected")
                .expression_attribute_names("#version", attribute::VERSION)
                .expression_attribute_values(
                    ":expected",
                    items::to_value("version", expected_version)?,
                )
                .return_values_on_condition_check_failure(return_old)
                .build()
                .map_err(built)?;
            plan.push(
                TransactWriteItem::builder().delete(delete).build(),
                Action::Projection {
                    kind: kind.clone(),
                    key: key.clone(),
                    expected: Some(*expected_version),
                },
                len,
            );
        }
    }
    Ok(())
}

/// The key of an event item.
pub(crate) fn event_key(stream_id: &str, sequence: u64) -> Result<Item, StoreError> {
    items::to_item(
        "event key",
        &EventKey {
            stream_id,
            sequence,
        },
    )
}

/// The key of an item in the projections table.
pub(crate) fn projection_key(kind: &str, key: &str) -> Result<Item, StoreError> {
    items::to_item("projection key", &ProjectionKey { kind, key })
}

/// The item's size, refused over [`ITEM_LEN_MAX`] with the item's name.
pub(crate) fn checked_len(name: &str, item: &Item) -> Result<usize, StoreError> {
    let len = items::item_len(item);
    if len > ITEM_LEN_MAX {
        return Err(invalid(format!(
            "{name} is {len} bytes as a DynamoDB item, more than ITEM_LEN_MAX ({ITEM_LEN_MAX}, \
             DynamoDB's 400 KB per item); make it smaller"
        )));
    }
    Ok(len)
}

fn single(value: &AttributeValue) -> Item {
    let mut item = Item::new();
    item.insert(String::new(), value.clone());
    item
}

/// A builder refused a request this module built: a bug here, not in the caller.
fn built(error: aws_sdk_dynamodb::error::BuildError) -> StoreError {
    StoreError::Invalid(format!(
        "the DynamoDB store built an incomplete request ({error}); this is a bug in \
         opx-store-dynamodb: report it"
    ))
}

fn invalid(message: String) -> StoreError {
    StoreError::Invalid(message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opx_app::ports::{IdempotencyRecord, Projection, Stage, WorkItem, PROJECTION_LEN_MAX};

    fn tables() -> TableNames {
        TableNames::for_prefix("opx").unwrap()
    }

    fn chain(stream: &str, from: Option<&EventEnvelope>, count: usize) -> Vec<EventEnvelope> {
        let (mut sequence, mut previous) =
            from.map_or((1, Digest::ZERO), |e| (e.sequence + 1, e.hash));
        let mut events = Vec::new();
        for _ in 0..count {
            let event =
                EventEnvelope::seal(stream, sequence, "Tested", 1, b"{}".to_vec(), previous);
            previous = event.hash;
            sequence += 1;
            events.push(event);
        }
        events
    }

    fn whole(commit: &Commit) -> Plan {
        validate(commit).unwrap();
        match build(&tables(), commit, 7).unwrap() {
            Built::Whole { plan, .. } => plan,
            Built::Broken { at, .. } => panic!("unexpectedly broken at {at:?}"),
        }
    }

    #[test]
    fn a_first_event_puts_the_event_and_the_stream_registry_item() {
        let commit = Commit {
            events: chain("signal:a", None, 1),
            ..Commit::default()
        };
        let plan = whole(&commit);
        assert_eq!(
            plan.actions,
            vec![
                Action::EventPut {
                    stream_id: "signal:a".into(),
                    sequence: 1
                },
                Action::StreamRegistered {
                    stream_id: "signal:a".into()
                },
            ]
        );
        let registry = plan.items[1].put().unwrap();
        assert_eq!(registry.table_name(), "opx-projections");
        assert_eq!(
            registry.condition_expression(),
            Some("attribute_not_exists(#kind)")
        );
    }

    #[test]
    fn several_events_of_one_stream_check_the_store_once() {
        let first = chain("incident:b", None, 2);
        let next = chain("incident:b", first.last(), 3);
        let plan = whole(&Commit {
            events: next,
            ..Commit::default()
        });
        // Three puts and one link check on #2 (the stored head); #4 and #5 link to events
        // of this transaction, which DynamoDB could not check without touching them twice.
        let links: Vec<_> = plan
            .actions
            .iter()
            .filter(|action| matches!(action, Action::EventLink { .. }))
            .collect();
        assert_eq!(
            links,
            vec![&Action::EventLink {
                stream_id: "incident:b".into(),
                sequence: 3
            }]
        );
        assert_eq!(plan.items.len(), 4);
        let check = plan.items[1].condition_check().unwrap();
        assert_eq!(check.condition_expression(), "#hash = :previous_hash");
        assert_eq!(
            check.key().get("sequence"),
            Some(&AttributeValue::N("2".into()))
        );
    }

    #[test]
    fn work_for_an_event_of_the_commit_needs_no_check_and_other_work_does() {
        let events = chain("signal:c", None, 2);
        let commit = Commit {
            events: vec![events[1].clone()],
            work_added: vec![
                WorkItem {
                    stage: Stage::Correlate,
                    input: events[1].pointer(),
                },
                WorkItem {
                    stage: Stage::Assess,
                    input: events[0].pointer(),
                },
            ],
            ..Commit::default()
        };
        let plan = whole(&commit);
        // put #2, link check on #1 (which also proves the second work item's event), and
        // two work updates: no separate check.
        assert_eq!(plan.items.len(), 4);
        assert!(!plan
            .actions
            .iter()
            .any(|action| matches!(action, Action::WorkEventCheck { .. })));

        let mut wrong = events[0].pointer();
        wrong.hash = Digest::of_bytes(b"another event");
        let commit = Commit {
            events: vec![events[1].clone()],
            work_added: vec![WorkItem {
                stage: Stage::Assess,
                input: wrong,
            }],
            ..Commit::default()
        };
        assert!(matches!(
            build(&tables(), &commit, 7),
            Err(StoreError::Invalid(message)) if message.contains("take the pointer")
        ));

        let commit = Commit {
            work_added: vec![WorkItem {
                stage: Stage::Detect,
                input: events[0].pointer(),
            }],
            ..Commit::default()
        };
        let plan = whole(&commit);
        assert_eq!(plan.items.len(), 2);
        assert!(matches!(plan.actions[0], Action::WorkEventCheck { .. }));
    }

    #[test]
    fn more_than_the_action_limit_is_invalid_before_sending() {
        // COMMIT_WRITES_MAX keeps real commits under the limit; the plan checks it anyway,
        // in case either limit changes.
        let streams: Vec<EventEnvelope> = (0..=TRANSACTION_ACTIONS_MAX / 2)
            .map(|index| chain(&format!("signal:{index:03}"), None, 1).remove(0))
            .collect();
        let commit = Commit {
            events: streams,
            ..Commit::default()
        };
        assert!(matches!(
            build(&tables(), &commit, 7),
            Err(StoreError::Invalid(message)) if message.contains("TRANSACTION_ACTIONS_MAX")
        ));
        let at_most = Commit {
            events: (0..TRANSACTION_ACTIONS_MAX / 2)
                .map(|index| chain(&format!("signal:{index:03}"), None, 1).remove(0))
                .collect(),
            ..Commit::default()
        };
        assert!(build(&tables(), &at_most, 7).is_ok());
    }

    #[test]
    fn an_item_over_400_kb_is_invalid_and_named() {
        let record = IdempotencyRecord {
            key: "api/big".into(),
            request_hash: Digest::ZERO,
            response: vec![b'x'; ITEM_LEN_MAX],
        };
        let commit = Commit {
            idempotency: vec![record],
            ..Commit::default()
        };
        validate(&commit).unwrap();
        match build(&tables(), &commit, 7) {
            Err(StoreError::Invalid(message)) => {
                assert!(
                    message.contains("idempotency record \"api/big\""),
                    "{message}"
                );
                assert!(message.contains("ITEM_LEN_MAX"), "{message}");
            }
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn a_transaction_over_4_mb_is_invalid() {
        let commit = Commit {
            projections: (0..17)
                .map(|index| ProjectionChange::Put {
                    projection: Projection {
                        kind: "incident".into(),
                        key: format!("i-{index}"),
                        version: 1,
                        document: vec![b'x'; PROJECTION_LEN_MAX],
                    },
                    expected_version: None,
                })
                .collect(),
            ..Commit::default()
        };
        validate(&commit).unwrap();
        assert!(matches!(
            build(&tables(), &commit, 7),
            Err(StoreError::Invalid(message)) if message.contains("TRANSACTION_LEN_MAX")
        ));
    }

    #[test]
    fn events_that_cannot_follow_each_other_are_broken_before_sending() {
        let events = chain("incident:d", None, 2);
        let reversed = Commit {
            events: vec![events[1].clone(), events[0].clone()],
            ..Commit::default()
        };
        match build(&tables(), &reversed, 7).unwrap() {
            Built::Broken { checks, at } => {
                assert_eq!(at, events[0].pointer());
                // #2 is checked (its key is free, #1 holds its previous hash), nothing put.
                assert_eq!(checks.items.len(), 2);
                assert!(checks
                    .items
                    .iter()
                    .all(|item| item.condition_check().is_some()));
            }
            Built::Whole { .. } => panic!("expected Broken"),
        }
        let unlinked = EventEnvelope::seal("s", 1, "T", 1, b"{}".to_vec(), Digest::of_bytes(b"x"));
        match build(
            &tables(),
            &Commit {
                events: vec![unlinked.clone()],
                ..Commit::default()
            },
            7,
        )
        .unwrap()
        {
            Built::Broken { checks, at } => {
                assert_eq!(at, unlinked.pointer());
                assert!(checks.items.is_empty());
            }
            Built::Whole { .. } => panic!("expected Broken"),
        }
    }

    #[test]
    fn internal_kinds_are_refused() {
        let commit = Commit {
            projections: vec![ProjectionChange::Delete {
                kind: "~work".into(),
                key: "k".into(),
                expected_version: 1,
            }],
            ..Commit::default()
        };
        assert!(matches!(validate(&commit), Err(StoreError::Invalid(_))));
    }
}
