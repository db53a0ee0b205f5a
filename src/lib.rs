//! The boxoffice server: the HTTP API over the engine, configuration, the database
//! bootstrap, telemetry and the command line.

pub mod cli;
pub mod config;
pub mod db;
pub mod error;
pub mod health;
pub mod startup;
pub mod telemetry;
pub mod users;
