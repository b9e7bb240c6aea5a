//! The application layer of opx: one handler per pipeline stage, written once over the
//! ports in [`ports`], run by the `opx` command over SQLite and by the Lambda functions
//! over DynamoDB. [`human`] is the one description of the human actions that the API,
//! the `opx` command and the route tables share.

#[cfg(feature = "conformance")]
pub mod conformance;
pub mod generated;
pub mod human;
pub mod ingest;
pub mod pipeline;
pub mod ports;
pub mod recovery;
pub mod replay;
pub mod store_cursor;
pub mod whatif;
