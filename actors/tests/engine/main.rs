//! The engine against real PostgreSQL: bursts, crashes, failed flushes and expiry, with the
//! invariants of docs/ARCHITECTURE.md checked in the database afterwards. One binary with modules.

mod backstops;
mod burst;
mod expiry;
mod faults;
mod feed;
mod queue;
mod shutdown;
mod support;
mod sweep;
