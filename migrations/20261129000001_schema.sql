-- boxoffice schema.
--
-- The engine decides every reservation in memory, but PostgreSQL is the source of truth
-- it is rebuilt from, so the constraints below are written to make an oversell impossible
-- even if the engine had a bug: counts can never go negative or exceed capacity, a seat row
-- names at most one hold and one booking, and a seat can only be BOOKED by a booking.
-- Money is integer cents; timestamps are timestamptz.

CREATE TABLE users (
    id            BIGSERIAL PRIMARY KEY,
    email         TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    first_name    TEXT NOT NULL DEFAULT '',
    last_name     TEXT NOT NULL DEFAULT '',
    role          TEXT NOT NULL DEFAULT 'CUSTOMER'
                  CONSTRAINT users_role_check CHECK (role IN ('CUSTOMER', 'ORGANIZER', 'ADMIN')),
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

CREATE TABLE venues (
    id         BIGSERIAL PRIMARY KEY,
    name       TEXT NOT NULL,
    address    TEXT NOT NULL DEFAULT '',
    capacity   INTEGER NOT NULL CONSTRAINT venues_capacity_check CHECK (capacity >= 0),
    created_by BIGINT REFERENCES users (id),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE events (
    id                   BIGSERIAL PRIMARY KEY,
    event_name           TEXT NOT NULL,
    event_date           TIMESTAMPTZ NOT NULL,
    venue_id             BIGINT REFERENCES venues (id),
    status               TEXT NOT NULL DEFAULT 'DRAFT'
                         CONSTRAINT events_status_check
                         CHECK (status IN ('DRAFT', 'ON_SALE', 'SOLD_OUT', 'CANCELLED', 'COMPLETED')),
    created_by           BIGINT NOT NULL REFERENCES users (id),
    sale_start_time      TIMESTAMPTZ NOT NULL,
    hold_ttl_seconds     INTEGER NOT NULL DEFAULT 600
                         CONSTRAINT events_hold_ttl_check CHECK (hold_ttl_seconds BETWEEN 10 AND 86400),
    max_tickets_per_user INTEGER NOT NULL DEFAULT 8
                         CONSTRAINT events_max_tickets_check CHECK (max_tickets_per_user BETWEEN 1 AND 1000),
    available_seats      INTEGER NOT NULL DEFAULT 0
                         CONSTRAINT events_available_seats_check CHECK (available_seats >= 0),
    version              BIGINT NOT NULL DEFAULT 1,
    -- Fencing epoch: bumped by every actor that loads this event; every write-behind
    -- transaction checks it, so a superseded actor can never write again.
    owner_epoch          BIGINT NOT NULL DEFAULT 0,
    created_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at           TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX idx_events_status_date ON events (status, event_date);
CREATE INDEX idx_events_creator ON events (created_by);
CREATE INDEX idx_events_sale_period ON events (sale_start_time, event_date)
    WHERE status IN ('DRAFT', 'ON_SALE');

CREATE TABLE event_sections (
    id          BIGSERIAL PRIMARY KEY,
    event_id    BIGINT NOT NULL REFERENCES events (id),
    name        TEXT NOT NULL,
    kind        TEXT NOT NULL CONSTRAINT event_sections_kind_check CHECK (kind IN ('GENERAL', 'RESERVED')),
    capacity    INTEGER NOT NULL CONSTRAINT event_sections_capacity_check CHECK (capacity > 0),
    price_cents BIGINT NOT NULL CONSTRAINT event_sections_price_check CHECK (price_cents >= 0),
    available   INTEGER NOT NULL,
    held        INTEGER NOT NULL DEFAULT 0,
    booked      INTEGER NOT NULL DEFAULT 0,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Invariant 1 of DESIGN.md, enforced by the database itself.
    CONSTRAINT event_sections_counts_check CHECK (
        available >= 0 AND held >= 0 AND booked >= 0 AND available + held + booked = capacity
    ),
    CONSTRAINT event_sections_name_key UNIQUE (event_id, name)
);
CREATE INDEX idx_event_sections_event ON event_sections (event_id);

CREATE TABLE bookings (
    id                BIGINT PRIMARY KEY,
    booking_reference TEXT NOT NULL,
    user_id           BIGINT NOT NULL REFERENCES users (id),
    event_id          BIGINT NOT NULL REFERENCES events (id),
    status            TEXT NOT NULL
                      CONSTRAINT bookings_status_check CHECK (status IN ('CONFIRMED', 'CANCELLED')),
    subtotal_cents    BIGINT NOT NULL CONSTRAINT bookings_subtotal_check CHECK (subtotal_cents >= 0),
    discount_cents    BIGINT NOT NULL DEFAULT 0,
    total_cents       BIGINT NOT NULL,
    discount_id       BIGINT,
    idempotency_key   TEXT,
    created_at        TIMESTAMPTZ NOT NULL,
    cancelled_at      TIMESTAMPTZ,
    CONSTRAINT bookings_money_check CHECK (
        discount_cents >= 0 AND discount_cents <= subtotal_cents
        AND total_cents = subtotal_cents - discount_cents
    )
);
CREATE SEQUENCE bookings_id_seq OWNED BY bookings.id;
CREATE UNIQUE INDEX idx_bookings_reference ON bookings (booking_reference);
CREATE INDEX idx_bookings_user ON bookings (user_id, created_at DESC, id DESC);
CREATE INDEX idx_bookings_event ON bookings (event_id, status);
CREATE INDEX idx_bookings_event_id ON bookings (event_id, id);
CREATE UNIQUE INDEX bookings_idempotency_key ON bookings (user_id, event_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

CREATE TABLE reservations (
    id              BIGINT PRIMARY KEY,
    user_id         BIGINT NOT NULL REFERENCES users (id),
    event_id        BIGINT NOT NULL REFERENCES events (id),
    section_id      BIGINT NOT NULL REFERENCES event_sections (id),
    quantity        INTEGER NOT NULL CONSTRAINT reservations_quantity_check CHECK (quantity > 0),
    seat_ids        BIGINT[] NOT NULL DEFAULT '{}',
    session_id      TEXT,
    status          TEXT NOT NULL
                    CONSTRAINT reservations_status_check
                    CHECK (status IN ('ACTIVE', 'CONFIRMED', 'EXPIRED', 'CANCELLED')),
    booking_id      BIGINT REFERENCES bookings (id),
    idempotency_key TEXT,
    expires_at      TIMESTAMPTZ NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL,
    -- A RESERVED hold names exactly as many seats as its quantity; a GENERAL one names none.
    CONSTRAINT reservations_seats_check CHECK (
        cardinality(seat_ids) = 0 OR cardinality(seat_ids) = quantity
    ),
    -- A confirmed hold belongs to a booking; an active one to none.
    CONSTRAINT reservations_booking_check CHECK (
        (status = 'ACTIVE' AND booking_id IS NULL) OR status <> 'ACTIVE'
    ),
    CONSTRAINT reservations_confirmed_check CHECK (
        (status = 'CONFIRMED') = (booking_id IS NOT NULL) OR status = 'CANCELLED'
    )
);
CREATE SEQUENCE reservations_id_seq OWNED BY reservations.id;
CREATE INDEX idx_reservations_user_status ON reservations (user_id, status);
CREATE INDEX idx_reservations_expiry ON reservations (expires_at, status) WHERE status = 'ACTIVE';
CREATE INDEX idx_reservations_session ON reservations (session_id, user_id);
CREATE INDEX idx_reservations_event_status ON reservations (event_id, status);
CREATE INDEX idx_reservations_booking ON reservations (booking_id) WHERE booking_id IS NOT NULL;
CREATE UNIQUE INDEX reservations_idempotency_key ON reservations (user_id, event_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

CREATE TABLE seats (
    id             BIGSERIAL PRIMARY KEY,
    event_id       BIGINT NOT NULL REFERENCES events (id),
    section_id     BIGINT NOT NULL REFERENCES event_sections (id),
    row_label      TEXT NOT NULL,
    row_index      INTEGER NOT NULL,
    seat_number    INTEGER NOT NULL,
    status         TEXT NOT NULL DEFAULT 'AVAILABLE'
                   CONSTRAINT seats_status_check CHECK (status IN ('AVAILABLE', 'RESERVED', 'BOOKED')),
    reservation_id BIGINT REFERENCES reservations (id),
    booking_id     BIGINT REFERENCES bookings (id),
    -- One row per seat and one owner column each: a seat can be in at most one hold and at
    -- most one booking at a time, and its status always agrees with who owns it.
    CONSTRAINT seats_owner_check CHECK (
        (status = 'AVAILABLE' AND reservation_id IS NULL AND booking_id IS NULL)
        OR (status = 'RESERVED' AND reservation_id IS NOT NULL AND booking_id IS NULL)
        OR (status = 'BOOKED' AND booking_id IS NOT NULL)
    ),
    CONSTRAINT seats_position_key UNIQUE (section_id, row_index, seat_number)
);
CREATE INDEX idx_seats_event_section_status ON seats (event_id, section_id, status);
CREATE INDEX idx_seats_booking ON seats (booking_id) WHERE booking_id IS NOT NULL;

CREATE TABLE discounts (
    id               BIGSERIAL PRIMARY KEY,
    event_id         BIGINT NOT NULL REFERENCES events (id),
    code             TEXT NOT NULL,
    percent_off      INTEGER CONSTRAINT discounts_percent_check CHECK (percent_off BETWEEN 1 AND 100),
    amount_off_cents BIGINT CONSTRAINT discounts_amount_check CHECK (amount_off_cents > 0),
    max_uses         INTEGER NOT NULL CONSTRAINT discounts_max_uses_check CHECK (max_uses > 0),
    used             INTEGER NOT NULL DEFAULT 0,
    valid_from       TIMESTAMPTZ,
    valid_until      TIMESTAMPTZ,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT discounts_kind_check CHECK ((percent_off IS NULL) <> (amount_off_cents IS NULL)),
    CONSTRAINT discounts_used_check CHECK (used >= 0 AND used <= max_uses),
    CONSTRAINT discounts_window_check CHECK (valid_from IS NULL OR valid_until IS NULL OR valid_from < valid_until)
);
CREATE UNIQUE INDEX discounts_event_code_key ON discounts (event_id, upper(code));

ALTER TABLE bookings ADD CONSTRAINT bookings_discount_fk FOREIGN KEY (discount_id) REFERENCES discounts (id);
