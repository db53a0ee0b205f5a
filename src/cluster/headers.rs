//! The headers nodes use between themselves.

/// Set on a forwarded request: the id of the node that forwarded it. A node never forwards
/// a request that carries it, and never holds the connection it came on (it is a peer's,
/// shared by many buyers).
pub const FORWARDED_BY: &str = "x-boxoffice-forwarded-by";
/// Set on a 503 from a node that received a forwarded request for an event it does not own.
pub const NOT_OWNER: &str = "x-boxoffice-not-owner";
