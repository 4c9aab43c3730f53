//! Integration tests of the ingestion crate (one test binary, a module per area).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a test failure

mod integration {
    pub mod harness;
    pub mod mqtt;
    pub mod pipeline;
}
