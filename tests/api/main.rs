//! Integration tests of the HTTP API: the real server on port 0, a fresh PostgreSQL database
//! per test, real Redis where configured. One binary with modules, so it links once.

mod auth;
mod authz;
mod bookings;
mod browser;
mod cache;
mod concurrency;
mod contract;
mod discounts;
mod docs;
mod events;
mod export;
mod health;
mod helpers;
mod jobs;
mod observability;
mod queue;
mod reservations;
mod rules;
mod sections;
mod stream;
mod structure;
