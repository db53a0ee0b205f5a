//! Reliability: crashes, database outages, overload and shutdown under load lose nothing
//! and never answer a false "yes". Some tests run the real `boxoffice` binary so that it can
//! be SIGKILLed and SIGTERMed; all traffic stays on loopback and every loop is bounded.

mod crash;
mod loadtest;
mod outage;
mod overload;
mod queue;
mod slow_clients;
mod support;
