//! The embedded store of opx (placeholder while it is written).
