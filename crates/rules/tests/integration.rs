//! The rule engine's integration tests: the case files under `tests/rules/` (rules,
//! observations and clock ticks in, the events expected out), and run-time failures.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a test failure

mod integration {
    pub mod cases;
    pub mod runtime;
}
