//! Integration tests of the hub (one test binary): persistence over a real store, and
//! the incident case files under `tests/cases/`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a test failure

/// A request of user `who` in `tenant`.
pub fn by(tenant: &str, who: &str) -> citybrain_access::RequestContext {
    citybrain_access::RequestContext::request(
        tenant,
        citybrain_access::Principal::user(who, &[]),
        format!("test-{who}"),
    )
}

mod integration {
    pub mod cases;
    pub mod store;
}
