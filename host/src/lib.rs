//! Bridle: a self-hostable Managed Agents server.
//!
//! The crate is split by concern: [`api`] is the HTTP surface (axum), [`model`]
//! the wire types, [`store`] persistence (sqlx, SQLite or PostgreSQL),
//! [`bus`] the in-process fan-out of appended session events, [`cluster`] the
//! notes PostgreSQL nodes exchange, [`selection`]
//! the harness-selection rules applied at session create, [`secrets`]
//! encryption of vault secrets at rest, [`metrics`] the Prometheus metrics,
//! and [`config`] the server settings.

pub mod api;
pub mod bus;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod egress_ca;
pub mod ids;
pub mod keys;
pub mod metrics;
pub mod model;
pub mod model_paths;
pub mod packages;
pub mod runtimes;
pub mod secrets;
pub mod selection;
pub mod server;
pub mod session;
pub mod store;
pub mod time;
