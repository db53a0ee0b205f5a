//! Write-behind with group commit.
//!
//! An event actor applies each decision in memory at once, adds its row changes to the open
//! [`Batch`] and parks the reply there. One flush at a time per event writes a whole batch in
//! one transaction ([`flush::write`]); only after COMMIT returns are the parked replies sent.
//! While a flush is in flight the next batch fills, so batches grow with load and latency at
//! low load stays one commit. If a flush fails, every parked reply gets an error — never a
//! false "yes" — and the actor is rebuilt from PostgreSQL.

mod batch;
pub mod flush;
mod one_statement;

pub use batch::Batch;
pub use batch::{SectionCounts, Writes};
