-- What a keyed request asked, stored next to its idempotency key. Without it an event
-- reloaded from PostgreSQL could not tell a retry (same request, same key: replay the first
-- answer) from a different request reusing the key (422 IDEMPOTENCY_KEY_REUSED).
-- Rows written before this column existed keep NULL and are replayed as before.
ALTER TABLE reservations ADD COLUMN request_fingerprint TEXT;
ALTER TABLE bookings ADD COLUMN request_fingerprint TEXT;
