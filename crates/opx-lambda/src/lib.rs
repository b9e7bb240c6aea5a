//! The Lambda side of opx: one plain async handler per function, generic over the store
//! and publisher ports, so every handler runs in tests over the SQLite store without
//! Lambda or DynamoDB, and in production over DynamoDB and EventBridge.
//!
//! | function | handler | input |
//! |---|---|---|
//! | `signal-ingest` | [`ingest::handle_signal_ingest`] | EventBridge CloudWatch alarm event, alarm-action payload, SNS event |
//! | `fanout` | [`fanout::handle_fanout`] | DynamoDB stream batch of the events table |
//! | `detection`, `evidence`, `confidence`, `promotion` | [`stage::handle_stage`] | opx bus event (a pointer) |
//! | `sweeper` | [`sweeper::handle_sweep`] | scheduled event |
//! | `replay` | [`replay::handle_replay`] | `{cursor?}` |
//!
//! A function's `main.rs` only wires: [`telemetry::init_logging`], the configuration and
//! clients once per cold start ([`config`]), then `lambda_runtime::run` with the handler.
//! Errors say whether a retry can help ([`error::HandlerError`]); poison input goes to the
//! rejects store and never blocks the pipeline. Metrics are CloudWatch embedded-metric
//! lines ([`telemetry`]).

pub mod config;
pub mod error;
pub mod fanout;
pub mod ingest;
pub mod invocation;
pub mod replay;
pub mod stage;
pub mod sweeper;
pub mod telemetry;

pub use error::HandlerError;
pub use invocation::{Invocation, SystemClock};
