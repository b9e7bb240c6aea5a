//! The stage functions `detection`, `evidence`, `confidence` and `promotion`: an opx bus
//! event in, one pipeline step run.
//!
//! The bus event's detail is a pointer ([`PointerDetail`]); the step re-reads the
//! committed event by that pointer with a consistent read, checks its hash and decides on
//! what is stored, never on the notification. [`Pipeline::run`] is idempotent, so a
//! redelivered notification finds the step's idempotency record and reports
//! `already_done`.
//!
//! What goes wrong, and what happens then:
//! - the event is not an opx bus event, its detail is malformed, or it names an event type
//!   this stage does not consume (a routing mistake): poison. It is recorded as a reject
//!   and the invocation succeeds, so it is neither retried nor looped.
//! - the store is unavailable, or the step kept losing races: the invocation fails as
//!   retryable and Lambda (EventBridge's async invoke) retries it; the work item stays
//!   queued for the sweeper in any case.
//! - anything else the pipeline refuses for good (a pointer whose event is missing or has
//!   another hash, corrupt stored data): recorded as a reject, logged with
//!   `retryable = false`, and the invocation succeeds; the work item stays queued, so the
//!   sweeper and `opx replay verify` keep reporting it until someone investigates.

use crate::error::HandlerError;
use crate::invocation::Invocation;
use crate::telemetry::{Metric, METRIC_END_TO_END_LAG_MS, METRIC_INCIDENTS_PROMOTED};
use opx_app::pipeline::{Pipeline, StepReport};
use opx_app::ports::{Publisher, Stage, Store, WorkItem};
use opx_domain::incident::{IncidentEvent, IncidentOpened};
use opx_publisher_eventbridge::{PointerDetail, EVENT_SOURCE};
use serde::Serialize;
use serde_json::Value;

/// What one invocation did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum StageOutcome {
    /// The step ran and committed.
    Done {
        /// The work item (`stage/stream/sequence`).
        work: String,
        /// The events written, as `stream#sequence`.
        events: Vec<String>,
        /// Incidents opened.
        incidents_opened: Vec<String>,
        /// Incidents that gained evidence or a recovery.
        incidents_updated: Vec<String>,
    },
    /// The step had already run (a redelivery, or the sweeper got there first).
    AlreadyDone {
        /// The work item.
        work: String,
    },
    /// The event was refused for good and recorded as a reject.
    Rejected {
        /// The offending field of the bus event.
        field: String,
        /// Why.
        reason: String,
    },
}

/// Why a bus event cannot be run, before any store access.
struct Refusal {
    field: &'static str,
    reason: String,
}

/// Reads the work item out of an opx bus event for `stage`.
fn work_item(stage: Stage, event: &Value) -> Result<WorkItem, Refusal> {
    let refuse = |field: &'static str, reason: String| Refusal { field, reason };
    let Some(object) = event.as_object() else {
        return Err(refuse(
            "$",
            "expected an EventBridge event object".to_owned(),
        ));
    };
    match object.get("source").and_then(Value::as_str) {
        Some(EVENT_SOURCE) => {}
        other => {
            return Err(refuse(
                "source",
                format!("expected {EVENT_SOURCE:?}, got {other:?}"),
            ))
        }
    }
    let Some(detail_type) = object.get("detail-type").and_then(Value::as_str) else {
        return Err(refuse("detail-type", "expected a string".to_owned()));
    };
    let Some(detail) = object.get("detail") else {
        return Err(refuse("detail", "missing".to_owned()));
    };
    let detail: PointerDetail = serde_json::from_value(detail.clone()).map_err(|error| {
        refuse(
            "detail",
            format!("expected a pointer (stream_id, sequence, hash, event_type, summary): {error}"),
        )
    })?;
    if detail.event_type != detail_type {
        return Err(refuse(
            "detail.event_type",
            format!(
                "{:?} disagrees with detail-type {detail_type:?}",
                detail.event_type
            ),
        ));
    }
    // A page completed from a bus event would be marked sent by a function that sends
    // nothing.
    if !stage.runs_from_bus() || !stage.consumes(&detail.event_type) {
        return Err(refuse(
            "detail.event_type",
            format!(
                "the {} stage consumes {}, got {:?} from the bus: check the bus rule that routes to it",
                stage.as_str(),
                stage.input_event_types().join(", "),
                detail.event_type
            ),
        ));
    }
    if detail.sequence == 0 {
        return Err(refuse("detail.sequence", "sequences start at 1".to_owned()));
    }
    Ok(WorkItem {
        stage,
        input: detail.pointer(),
    })
}

/// Runs one stage step for an opx bus event; see the module documentation.
pub async fn handle_stage<S: Store, P: Publisher>(
    store: &S,
    pipeline: &Pipeline<'_, S, P>,
    stage: Stage,
    invocation: &Invocation<'_>,
    event: &Value,
) -> Result<StageOutcome, HandlerError> {
    let input = serde_json::to_vec(event).unwrap_or_default();
    let item = match work_item(stage, event) {
        Ok(item) => item,
        Err(refusal) => {
            return reject(store, invocation, &input, refusal.field, refusal.reason).await;
        }
    };
    let work = item.key();
    match pipeline.run(&item).await {
        Ok(report) if report.already_done => {
            tracing::info!(function = invocation.function, request_id = invocation.request_id, %work, "already done (redelivery)");
            Ok(StageOutcome::AlreadyDone { work })
        }
        Ok(report) => {
            record_metrics(pipeline, invocation, &report).await;
            tracing::info!(
                function = invocation.function,
                request_id = invocation.request_id,
                %work,
                events = report.events.len(),
                incidents_opened = report.incidents_opened.len(),
                "step done"
            );
            Ok(StageOutcome::Done {
                work,
                events: report
                    .events
                    .iter()
                    .map(|pointer| format!("{}#{}", pointer.stream_id, pointer.sequence))
                    .collect(),
                incidents_opened: report
                    .incidents_opened
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
                incidents_updated: report
                    .incidents_updated
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
            })
        }
        Err(error) if error.is_transient() => {
            Err(HandlerError::from(error).logged(invocation.function))
        }
        Err(error) => {
            tracing::error!(function = invocation.function, retryable = false, %work, %error, "step refused for good; its work item stays queued for investigation");
            reject(
                store,
                invocation,
                &input,
                "detail",
                format!("{work}: {error}"),
            )
            .await
        }
    }
}

async fn reject<S: Store>(
    store: &S,
    invocation: &Invocation<'_>,
    input: &[u8],
    field: &str,
    reason: String,
) -> Result<StageOutcome, HandlerError> {
    tracing::warn!(function = invocation.function, request_id = invocation.request_id, retryable = false, field, reason = %reason, "bus event rejected");
    invocation
        .record_reject(store, input, 0, field, &reason)
        .await
        .map_err(|error| HandlerError::from(error).logged(invocation.function))?;
    Ok(StageOutcome::Rejected {
        field: field.to_owned(),
        reason,
    })
}

/// Promotions and their end-to-end lag: from the earliest evidence's event time (the
/// alarm's state change) to now, by the Lambda's clock.
pub(crate) async fn record_metrics<S: Store, P: Publisher>(
    pipeline: &Pipeline<'_, S, P>,
    invocation: &Invocation<'_>,
    report: &StepReport,
) {
    if report.incidents_opened.is_empty() {
        return;
    }
    let now = invocation.clock.now();
    let mut lags_ms = Vec::new();
    for pointer in &report.events {
        if !pointer.stream_id.starts_with("incident:") {
            continue;
        }
        let opened = match pipeline.read_pointer(pointer).await {
            Ok(event) if event.event_type == IncidentOpened::EVENT_TYPE => {
                IncidentEvent::from_payload(&event.event_type, event.schema_version, &event.payload)
            }
            Ok(_) => continue,
            Err(error) => {
                tracing::warn!(%error, "the opened incident could not be read back for the lag metric");
                continue;
            }
        };
        if let Ok(IncidentEvent::IncidentOpened(opened)) = opened {
            if let Some(earliest) = opened.evidence.iter().map(|item| item.event_time).min() {
                lags_ms.push(now.0.saturating_sub(earliest.0));
            }
        }
    }
    invocation.emit(&[
        Metric::count(
            METRIC_INCIDENTS_PROMOTED,
            report.incidents_opened.len() as u64,
        ),
        Metric::milliseconds(METRIC_END_TO_END_LAG_MS, lags_ms),
    ]);
}

/// The whole `main` of a stage function (detection, evidence, confidence, promotion):
/// logging, the DynamoDB store and the pipeline built once per cold start, then the
/// runtime loop over [`handle_stage`]. The stage publishes nothing: the fan-out publishes
/// every commit from the events table's stream.
pub async fn run_stage_function(stage: Stage) -> Result<(), lambda_runtime::Error> {
    use crate::config::{connect_store, pipeline_config, ProcessEnvironment};
    use crate::telemetry::{init_logging, StdoutMetrics};
    use crate::{Invocation, SystemClock};
    use lambda_runtime::{service_fn, LambdaEvent};
    use opx_app::ports::NoPublisher;

    let function = stage.function_name();
    init_logging();
    let store = connect_store(&ProcessEnvironment)
        .await
        .map_err(|error| error.logged(function))?;
    let config = pipeline_config().map_err(|error| error.logged(function))?;
    let pipeline = Pipeline::new(&store, &NoPublisher, &config);
    let (store, pipeline, clock, metrics) = (&store, &pipeline, &SystemClock, &StdoutMetrics);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let invocation = Invocation::from_lambda(function, &event.context, clock, metrics);
        handle_stage(store, pipeline, stage, &invocation, &event.payload).await
    }))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bus_event(detail_type: &str, detail: Value) -> Value {
        json!({
            "version": "0",
            "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
            "detail-type": detail_type,
            "source": "opx",
            "account": "111122223333",
            "time": "2026-11-24T03:00:11Z",
            "region": "us-east-1",
            "resources": [],
            "detail": detail
        })
    }

    fn detail(event_type: &str) -> Value {
        json!({
            "stream_id": "signal:ab",
            "sequence": 1,
            "hash": "00".repeat(32),
            "event_type": event_type,
            "summary": {"stream_kind": "signal", "schema_version": 1, "payload_len": 10}
        })
    }

    #[test]
    fn a_pointer_becomes_a_work_item() {
        let item = work_item(
            Stage::Detect,
            &bus_event("SignalAccepted", detail("SignalAccepted")),
        )
        .map_err(|refusal| refusal.reason)
        .unwrap();
        assert_eq!(item.key(), "detect/signal:ab/1");
    }

    #[test]
    fn no_bus_event_completes_a_page() {
        for event_type in opx_app::ports::PAGING_EVENT_TYPES {
            let mut detail = detail(event_type);
            detail["stream_id"] = json!("incident:ab");
            let event = bus_event(event_type, detail);
            match work_item(Stage::Page, &event) {
                Ok(item) => panic!("{event} became {item:?}"),
                Err(refusal) => assert_eq!(refusal.field, "detail.event_type"),
            }
        }
    }

    #[test]
    fn malformed_or_misrouted_events_are_refused_naming_the_field() {
        let cases = [
            (json!([1]), "$"),
            (
                json!({"source": "aws.cloudwatch", "detail-type": "SignalAccepted", "detail": detail("SignalAccepted")}),
                "source",
            ),
            (
                bus_event("SignalAccepted", json!({"stream_id": "signal:ab"})),
                "detail",
            ),
            (
                bus_event(
                    "SignalAccepted",
                    json!({"stream_id": "x", "sequence": 1, "hash": "zz", "event_type": "SignalAccepted", "summary": {}}),
                ),
                "detail",
            ),
            (
                bus_event("SignalEvaluated", detail("SignalAccepted")),
                "detail.event_type",
            ),
            (
                bus_event("SignalEvaluated", detail("SignalEvaluated")),
                "detail.event_type",
            ),
        ];
        for (event, field) in cases {
            match work_item(Stage::Detect, &event) {
                Ok(item) => panic!("{event} was accepted as {item:?}"),
                Err(refusal) => assert_eq!(refusal.field, field, "{event}: {}", refusal.reason),
            }
        }
    }
}
