//! Every limit boxoffice enforces on what a request may ask, in one place. The inventory
//! checks them (it is the one place decisions are made); the server uses the same constants
//! to validate early and to describe them in its API documentation.

/// Tickets one hold request may take.
pub const MAX_TICKETS_PER_REQUEST: u32 = 100;
/// Holds one booking may confirm at once.
pub const MAX_HOLDS_PER_BOOKING: usize = 64;
/// The per-buyer ticket limit of an event that sets none.
pub const DEFAULT_MAX_TICKETS_PER_USER: u32 = 8;
/// The highest per-buyer ticket limit an event may set.
pub const MAX_TICKETS_PER_USER: u32 = 1_000;
/// The shortest hold lifetime an event may set.
pub const MIN_HOLD_TTL_SECONDS: u32 = 10;
/// The longest hold lifetime an event may set.
pub const MAX_HOLD_TTL_SECONDS: u32 = 86_400;
/// Sections of one event, so that one organizer cannot make an actor too large to load fast.
pub const MAX_SECTIONS_PER_EVENT: usize = 100;
/// Tickets of one GENERAL section.
pub const MAX_GENERAL_CAPACITY: u32 = 1_000_000;
/// Rows of one seated section.
pub const MAX_ROWS: u32 = 1_000;
/// Seats of one row.
pub const MAX_SEATS_PER_ROW: u32 = 1_000;
/// Seats of one seated section.
pub const MAX_RESERVED_SEATS: u32 = 200_000;
/// Characters of a section name.
pub const MAX_SECTION_NAME_CHARS: usize = 100;
/// Discount codes of one event.
pub const MAX_DISCOUNTS_PER_EVENT: usize = 1_000;
/// Characters of a discount code.
pub const MAX_DISCOUNT_CODE_CHARS: usize = 32;
/// Uses of one discount code.
pub const MAX_DISCOUNT_USES: u32 = 10_000_000;
/// The highest price of a ticket, and the highest fixed discount.
pub const MAX_PRICE_CENTS: i64 = 100_000_000;
/// The largest venue.
pub const MAX_VENUE_CAPACITY: u32 = 1_000_000;

/// What a discount code looks like, as the OpenAPI document states it: 1 to
/// [`MAX_DISCOUNT_CODE_CHARS`] ASCII letters, digits, `-` or `_` (compared without case).
pub const DISCOUNT_CODE_PATTERN: &str = "^[A-Za-z0-9_-]{1,32}$";

/// Whether `code` has the form of [`DISCOUNT_CODE_PATTERN`].
pub fn is_discount_code(code: &str) -> bool {
    (1..=MAX_DISCOUNT_CODE_CHARS).contains(&code.len())
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A name must contain something other than spaces, tabs and line breaks — the blanks
/// trimmed from its ends — and, like all stored text, no NUL character (PostgreSQL's `text`
/// cannot hold one). The OpenAPI document states it as this pattern; it names each
/// character one by one, so that every regex dialect reads it as [`is_name`] does.
pub const NAME_PATTERN: &str = "^[^\\u0000]*[^ \\t\\r\\n\\u0000][^\\u0000]*$";

/// Stored text other than names: anything but the NUL character.
pub const TEXT_PATTERN: &str = "^[^\\u0000]*$";

/// Whether `text` fits [`NAME_PATTERN`].
pub fn is_name(text: &str) -> bool {
    !trim_blank(text).is_empty() && is_text(text)
}

/// Whether `text` fits [`TEXT_PATTERN`].
pub fn is_text(text: &str) -> bool {
    !text.contains('\0')
}

/// `text` without blanks (spaces, tabs, line breaks) at either end.
pub fn trim_blank(text: &str) -> &str {
    text.trim_matches([' ', '\t', '\r', '\n'])
}

/// The slowest waiting-room pace an event may set: buyers let in per minute.
pub const MIN_ADMIT_PER_MINUTE: u32 = 1;
/// The fastest waiting-room pace (10,000 a second: past it a waiting room holds nobody back).
pub const MAX_ADMIT_PER_MINUTE: u32 = 600_000;
/// The waiting-room pace of an event that sets none.
pub const DEFAULT_ADMIT_PER_MINUTE: u32 = 1_000;
/// The shortest life of a waiting-room pass.
pub const MIN_PASS_TTL_SECONDS: u32 = 10;
/// The longest life of a waiting-room pass.
pub const MAX_PASS_TTL_SECONDS: u32 = 7_200;
/// The life of a waiting-room pass of an event that sets none.
pub const DEFAULT_PASS_TTL_SECONDS: u32 = 600;
/// Buyers in one event's waiting room (each costs the actor about 100 bytes).
pub const MAX_QUEUE_ENTRIES: usize = 2_000_000;
