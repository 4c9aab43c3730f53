//! In-process tests of the HTTP API (one test binary, a module per area).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a test failure

mod integration {
    pub mod access;
    pub mod attacks;
    pub mod backups;
    pub mod bad_input;
    pub mod batch;
    pub mod catalog;
    pub mod egress;
    pub mod entities;
    pub mod federation;
    pub mod golden;
    pub mod governance;
    pub mod hardening;
    pub mod harness;
    pub mod incidents;
    pub mod ingest;
    pub mod live;
    pub mod modes;
    pub mod open311;
    pub mod openapi;
    pub mod platform_input;
    pub mod query;
    pub mod rules;
    pub mod spatial;
    pub mod storage_faults;
    pub mod subscriptions;
    pub mod temporal;
    pub mod twin;
}
