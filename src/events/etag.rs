//! Entity tags for event details: derived from the body with a hash whose output is fixed
//! by its specification (SHA-256), so a tag stays the same across builds, Rust releases and
//! nodes, and compared as RFC 9110 says `If-None-Match` must be — weakly.

use sha2::{Digest, Sha256};

/// The weak entity tag of a body: `W/"` and the first 16 bytes of its SHA-256 in hex. Weak,
/// because equal tags promise equal content, not byte-identical encodings.
pub fn of(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    let mut tag = String::with_capacity(2 + 2 + 32 + 1);
    tag.push_str("W/\"");
    for byte in &digest[..16] {
        tag.push_str(&format!("{byte:02x}"));
    }
    tag.push('"');
    tag
}

/// Whether an `If-None-Match` header value names `etag` (or is `*`). RFC 9110 §13.1.2 uses
/// the weak comparison: tags are equal when their opaque parts are, whether either is marked
/// weak (`W/`) or not.
pub fn none_match(header: &str, etag: &str) -> bool {
    let opaque = |tag: &str| tag.trim().trim_start_matches("W/").to_string();
    let ours = opaque(etag);
    header.trim() == "*" || header.split(',').any(|t| opaque(t) == ours)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_is_fixed_by_the_body_alone() {
        // SHA-256("{}") starts 44136fa355b3678a1146ad16f7e8649e: a value that no compiler
        // or standard-library release can change.
        assert_eq!(of(b"{}"), "W/\"44136fa355b3678a1146ad16f7e8649e\"");
        assert_ne!(of(b"{}"), of(b"[]"));
    }

    #[test]
    fn if_none_match_compares_weakly() {
        let tag = of(b"body");
        let strong = tag.trim_start_matches("W/").to_string();
        assert!(none_match(&tag, &tag));
        assert!(
            none_match(&strong, &tag),
            "a strong form of the same tag matches"
        );
        assert!(none_match(&format!("\"other\", {strong}"), &tag));
        assert!(none_match("*", &tag));
        assert!(!none_match("\"other\"", &tag));
        assert!(!none_match("W/\"other\"", &tag));
    }
}
