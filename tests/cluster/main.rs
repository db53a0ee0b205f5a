//! Cluster mode with real processes: three `boxoffice serve` nodes on loopback ports, one
//! PostgreSQL, HAProxy in front. Each event is owned by exactly one node; a request that
//! reaches another node is forwarded there once; a node that dies, stops, loses the database
//! or restarts hands its events on without losing an acknowledged change. All traffic stays
//! on loopback and every wait is bounded.

mod failover;
mod operations;
mod ownership;
#[allow(dead_code)]
#[path = "../reliability/support.rs"]
mod process;
mod support;
