-- An expiry writes no reservation row.
--
-- A hold's expiry is fully determined by its expires_at: the event's actor expires, at the
-- moment T it checks, every ACTIVE hold whose expires_at is at or before T, and nothing
-- else. Writing each expired hold back as status = 'EXPIRED' cost a row update per hold —
-- and not a cheap one: status is in an index, so no update is HOT. With every hold of an
-- on-sale abandoned, that is as many row writes as the holds themselves.
--
-- Instead each group commit that carries expiries advances one value on the event row,
-- holds_expired_through = T, in the same statement as the sections' counts (which already
-- reflect the expiries). A reservation stored as ACTIVE whose expires_at is at or before
-- the event's holds_expired_through is EXPIRED. Nothing is lost: the actor's clock only
-- moves forward and a hold lives at least 10 s (events_hold_ttl_check), so every hold
-- created after T expires after T, and every hold due at T was expired at T.
--
-- Rows written as EXPIRED before this migration, or created and expired in one group
-- commit (a stalled write-behind), keep their stored status; both readings agree.
-- Requires the nodes of a cluster to agree on wall-clock time to well within the hold TTL
-- (a new owner of the event reads holds_expired_through written with its predecessor's
-- clock).
ALTER TABLE events ADD COLUMN holds_expired_through TIMESTAMPTZ;

-- Every reader of a hold's status reads it here, never from reservations.status alone (a
-- query for holds not yet due, status = 'ACTIVE' AND expires_at > now(), needs no watermark).
-- updated_at of an expired hold is when it lapsed.
CREATE VIEW reservations_effective AS
SELECT r.id, r.user_id, r.event_id, r.section_id, r.quantity, r.seat_ids, r.session_id,
       CASE WHEN l.lapsed THEN 'EXPIRED' ELSE r.status END AS status,
       r.booking_id, r.idempotency_key, r.request_fingerprint, r.expires_at, r.created_at,
       CASE WHEN l.lapsed THEN r.expires_at ELSE r.updated_at END AS updated_at
FROM reservations r
JOIN events e ON e.id = r.event_id
CROSS JOIN LATERAL (
    SELECT r.status = 'ACTIVE'
           AND COALESCE(r.expires_at <= e.holds_expired_through, false) AS lapsed
) l;

-- No query reads this index (expiry is decided in memory and recovery reads by event), yet
-- every hold inserted paid for an entry in it.
DROP INDEX idx_reservations_expiry;
