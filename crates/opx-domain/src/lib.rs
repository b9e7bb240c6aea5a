//! The deterministic core of opx.
//!
//! Everything in this crate is a pure function of its arguments: no I/O, no clock, no
//! randomness, no environment, no hash-map iteration order. Time enters as data
//! ([`time::EpochMs`]), ids are derived with SHA-256 over canonical fields ([`hash`]), and
//! every hashed structure is integer-only. `tests/purity.rs` fails if a dependency that
//! could break this creeps into the crate's dependency closure, and the workspace
//! `clippy.toml` forbids clocks and environment reads.
//!
//! The flow the modules follow: a source payload is parsed into [`signal::Signal`]s
//! ([`source`]); a versioned [`rules::RuleSet`] turns a signal into a
//! [`detection::Detection`] (or says why not); detections are grouped into evidence
//! ([`correlation`]); a [`confidence::ConfidenceModel`] scores a bundle; the
//! [`promotion`] gate decides; the [`incident`] aggregate records the outcome and every
//! human act; [`event`] hash-chains it all.

pub mod confidence;
pub mod correlation;
pub mod detection;
pub mod event;
pub mod glob;
pub mod hash;
pub mod incident;
pub mod promotion;
pub mod record;
pub mod rules;
pub mod signal;
pub mod source;
pub mod time;
