//! HTTP handlers, one module per API area. Each decodes the request, calls the broker and
//! encodes the answer; none holds business logic.

pub mod audit;
pub mod backups;
pub mod batch;
pub mod catalog;
pub mod console;
pub mod contexts;
pub mod csource_subscriptions;
pub mod discovery;
pub mod entities;
pub mod federated;
pub mod governance;
pub mod incidents;
pub mod ingest;
pub mod live;
pub mod modes;
pub mod open311;
pub mod openapi;
pub mod registrations;
pub mod rules;
pub mod subscriptions;
pub mod temporal;
pub mod twin;
