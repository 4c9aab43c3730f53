//! In-process tests of the HTTP API (one test binary, a module per area).

mod integration {
    pub mod batch;
    pub mod bad_input;
    pub mod entities;
    pub mod harness;
    pub mod query;
    pub mod subscriptions;
}
