//! Structured logs and CloudWatch embedded-metric-format (EMF) metrics.
//!
//! Logs are JSON lines on stdout (one object per event, fields flattened), so CloudWatch
//! Logs Insights can filter on `retryable`, `function` or `work` directly. Metrics are EMF
//! lines on stdout: CloudWatch extracts them into namespace [`METRICS_NAMESPACE`] without
//! any API call from the function. Time in a metric line is the Lambda's clock: this is
//! the one place outside human actions where opx reads a clock, and nothing read here
//! reaches an event or a hash.

use opx_domain::time::EpochMs;
use serde_json::{json, Value};
use std::io::Write;
use std::sync::Mutex;

/// The CloudWatch namespace of every opx metric.
pub const METRICS_NAMESPACE: &str = "opx";
/// Signals recorded for the first time (count).
pub const METRIC_SIGNALS_INGESTED: &str = "SignalsIngested";
/// Payloads or payload items refused, and signals refused as conflicting (count).
pub const METRIC_SIGNALS_REJECTED: &str = "SignalsRejected";
/// Incidents opened by the promotion gate (count).
pub const METRIC_INCIDENTS_PROMOTED: &str = "IncidentsPromoted";
/// From the earliest evidence's event time (when the alarm changed state) to the
/// incident's creation, by the Lambda's clock (milliseconds).
pub const METRIC_END_TO_END_LAG_MS: &str = "EndToEndLagMs";
/// The EMF dimension naming the function.
pub const METRIC_DIMENSION_FUNCTION: &str = "Function";
/// Most values of one metric in one EMF line (a CloudWatch limit).
pub const METRIC_VALUES_PER_LINE_MAX: usize = 100;

/// The unit of a metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricUnit {
    /// A count.
    Count,
    /// Milliseconds.
    Milliseconds,
}

impl MetricUnit {
    fn as_str(self) -> &'static str {
        match self {
            MetricUnit::Count => "Count",
            MetricUnit::Milliseconds => "Milliseconds",
        }
    }
}

/// One metric with its values (one value for a count; one per observation for a lag).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Metric {
    /// One of the `METRIC_*` names.
    pub name: &'static str,
    /// Its unit.
    pub unit: MetricUnit,
    /// Its values; at most [`METRIC_VALUES_PER_LINE_MAX`] are written.
    pub values: Vec<i64>,
}

impl Metric {
    /// A count.
    pub fn count(name: &'static str, value: u64) -> Metric {
        Metric {
            name,
            unit: MetricUnit::Count,
            values: vec![i64::try_from(value).unwrap_or(i64::MAX)],
        }
    }

    /// Durations in milliseconds.
    pub fn milliseconds(name: &'static str, values: Vec<i64>) -> Metric {
        Metric {
            name,
            unit: MetricUnit::Milliseconds,
            values,
        }
    }
}

/// One EMF log line: the metrics (those without values are left out) under namespace
/// [`METRICS_NAMESPACE`] with the function as the only dimension, or `None` if there is
/// nothing to record.
pub fn emf_line(function: &str, timestamp: EpochMs, metrics: &[Metric]) -> Option<String> {
    let metrics: Vec<&Metric> = metrics.iter().filter(|m| !m.values.is_empty()).collect();
    if metrics.is_empty() {
        return None;
    }
    let definitions: Vec<Value> = metrics
        .iter()
        .map(|metric| json!({"Name": metric.name, "Unit": metric.unit.as_str()}))
        .collect();
    let mut line = serde_json::Map::new();
    line.insert(
        "_aws".to_owned(),
        json!({
            "Timestamp": timestamp.0,
            "CloudWatchMetrics": [{
                "Namespace": METRICS_NAMESPACE,
                // Two dimension sets: the whole of opx (what the CDK app's alarms watch)
                // and per function (for the dashboard).
                "Dimensions": [[], [METRIC_DIMENSION_FUNCTION]],
                "Metrics": definitions,
            }],
        }),
    );
    line.insert(METRIC_DIMENSION_FUNCTION.to_owned(), json!(function));
    for metric in metrics {
        let values = &metric.values[..metric.values.len().min(METRIC_VALUES_PER_LINE_MAX)];
        let value = match values {
            [one] => json!(one),
            many => json!(many),
        };
        line.insert(metric.name.to_owned(), value);
    }
    Some(Value::Object(line).to_string())
}

/// Where metric lines go.
pub trait MetricsSink: Send + Sync {
    /// Writes one complete line.
    fn write_line(&self, line: &str);
}

/// Metric lines to stdout, where Lambda sends them to CloudWatch Logs.
#[derive(Clone, Copy, Debug, Default)]
pub struct StdoutMetrics;

impl MetricsSink for StdoutMetrics {
    fn write_line(&self, line: &str) {
        let mut stdout = std::io::stdout().lock();
        // A metric that cannot be written must not fail the invocation whose work is
        // already committed.
        if let Err(error) = writeln!(stdout, "{line}") {
            tracing::warn!(%error, "a metric line could not be written");
        }
    }
}

/// Metric lines kept in memory (tests, and callers that want to inspect them).
#[derive(Debug, Default)]
pub struct CapturedMetrics {
    lines: Mutex<Vec<String>>,
}

impl CapturedMetrics {
    /// The lines written so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines
            .lock()
            .map(|lines| lines.clone())
            .unwrap_or_default()
    }

    /// The sum of every value of metric `name` over all lines.
    pub fn total(&self, name: &str) -> i64 {
        self.values(name).iter().sum()
    }

    /// Every value of metric `name` over all lines, in order.
    pub fn values(&self, name: &str) -> Vec<i64> {
        let mut values = Vec::new();
        for line in self.lines() {
            let Ok(Value::Object(object)) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            match object.get(name) {
                Some(Value::Number(number)) => values.extend(number.as_i64()),
                Some(Value::Array(items)) => values.extend(items.iter().filter_map(Value::as_i64)),
                _ => {}
            }
        }
        values
    }
}

impl MetricsSink for CapturedMetrics {
    fn write_line(&self, line: &str) {
        if let Ok(mut lines) = self.lines.lock() {
            lines.push(line.to_owned());
        }
    }
}

/// Starts JSON logging to stdout for a function: one object per line, level from
/// `RUST_LOG` (default `info`), fields flattened, no ANSI colours. Call once in `main`.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let installed = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(false)
        .with_ansi(false)
        .with_env_filter(filter)
        .with_writer(std::io::stdout)
        .try_init();
    if installed.is_err() {
        tracing::debug!("a tracing subscriber was already installed; keeping it");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_emf_line_declares_its_metrics() {
        let line = emf_line(
            "promotion",
            EpochMs(1_700_000_000_000),
            &[
                Metric::count(METRIC_INCIDENTS_PROMOTED, 2),
                Metric::milliseconds(METRIC_END_TO_END_LAG_MS, vec![1200, 900]),
                Metric::milliseconds("Unused", vec![]),
            ],
        )
        .unwrap();
        let value: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            value,
            json!({
                "_aws": {
                    "Timestamp": 1_700_000_000_000_i64,
                    "CloudWatchMetrics": [{
                        "Namespace": "opx",
                        "Dimensions": [[], ["Function"]],
                        "Metrics": [
                            {"Name": "IncidentsPromoted", "Unit": "Count"},
                            {"Name": "EndToEndLagMs", "Unit": "Milliseconds"}
                        ]
                    }]
                },
                "Function": "promotion",
                "IncidentsPromoted": 2,
                "EndToEndLagMs": [1200, 900]
            })
        );
        assert!(emf_line("x", EpochMs(0), &[]).is_none());
    }

    #[test]
    fn captured_metrics_add_up() {
        let sink = CapturedMetrics::default();
        for count in [1, 2] {
            sink.write_line(
                &emf_line(
                    "f",
                    EpochMs(0),
                    &[Metric::count(METRIC_SIGNALS_INGESTED, count)],
                )
                .unwrap(),
            );
        }
        assert_eq!(sink.total(METRIC_SIGNALS_INGESTED), 3);
        assert_eq!(sink.total(METRIC_SIGNALS_REJECTED), 0);
    }
}
