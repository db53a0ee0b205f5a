//! The boxoffice server: the HTTP API over the engine, configuration, the database
//! bootstrap, telemetry and the command line.

pub mod access;
pub mod auth;
pub mod bookings;
pub mod cache;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod connections;
pub mod db;
pub mod demo;
pub mod discounts;
pub mod error;
pub mod events;
pub mod extract;
pub mod health;
pub mod loadtest;
pub mod openapi;
pub mod outbox;
pub mod pagination;
pub mod queue;
pub mod reservations;
pub mod sections;
pub mod startup;
pub mod state;
pub mod stream;
pub mod telemetry;
pub mod users;
pub mod venues;
pub mod web;
