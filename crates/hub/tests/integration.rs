//! Integration tests of the hub (one test binary): persistence over a real store, and
//! the incident case files under `tests/cases/`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a test failure

mod integration {
    pub mod cases;
    pub mod store;
}
