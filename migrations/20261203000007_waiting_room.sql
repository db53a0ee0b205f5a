-- The waiting room: a fair queue in front of an on-sale, owned (like everything else about
-- the event) by the event's actor and written by the same group commit as its holds.
--
-- Buyers who join before the sale opens are ordered by a random draw when it opens; later
-- arrivals queue behind them in arrival order. `rank` is the place in that order (0 first),
-- NULL for an early arrival until the draw. Admission walks the order from the front, so the
-- admitted entries are always ranks 0..n: one UPDATE over a rank range admits a whole tick.
-- A pass is good until pass_expires_at; EXPIRED is never written — it is that time passing.
ALTER TABLE events
    ADD COLUMN waiting_room_enabled BOOLEAN NOT NULL DEFAULT false,
    ADD COLUMN queue_admit_per_minute INTEGER NOT NULL DEFAULT 1000
        CONSTRAINT events_queue_admit_per_minute_check
        CHECK (queue_admit_per_minute BETWEEN 1 AND 600000),
    ADD COLUMN queue_pass_ttl_seconds INTEGER NOT NULL DEFAULT 600
        CONSTRAINT events_queue_pass_ttl_seconds_check
        CHECK (queue_pass_ttl_seconds BETWEEN 10 AND 7200);

-- A join is as hot as a hold, so the table is kept as lean as reservations
-- (20261129000003_hot_path.sql): no foreign keys (each would run a per-row trigger locking
-- the same hot event row and a user row; the event's actor is the only writer and checks
-- both in memory, and boxoffice_engine::audit::violations reports an entry whose buyer does
-- not exist), and two indexes: the primary key (one entry per buyer) and the rank (one
-- buyer per place, and the range an admission updates).
CREATE TABLE queue_entries (
    event_id        BIGINT NOT NULL,
    user_id         BIGINT NOT NULL,
    -- Order of arrival within the event, from 0 (kept to rebuild the undrawn early arrivals
    -- in the order they came; never looked up).
    arrival_seq     BIGINT NOT NULL,
    -- Joined before the sale opened: placed by the draw.
    early           BOOLEAN NOT NULL,
    rank            INTEGER,
    joined_at       TIMESTAMPTZ NOT NULL,
    admitted_at     TIMESTAMPTZ,
    pass_expires_at TIMESTAMPTZ,
    -- The first hold placed with the pass; a pass never used gives its place to the next.
    pass_used_at    TIMESTAMPTZ,
    -- One entry per buyer per event.
    PRIMARY KEY (event_id, user_id),
    CONSTRAINT queue_entries_rank UNIQUE (event_id, rank),
    CONSTRAINT queue_entries_pass_check CHECK (
        (admitted_at IS NULL) = (pass_expires_at IS NULL)
        AND (admitted_at IS NULL OR rank IS NOT NULL)
        AND (pass_used_at IS NULL OR admitted_at IS NOT NULL)
        AND (early OR rank IS NOT NULL)
    )
);
