//! Async Rust client for Surge.
