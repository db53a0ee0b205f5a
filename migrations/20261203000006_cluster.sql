-- Cluster mode: several nodes on one PostgreSQL, each event owned by exactly one node at a
-- time. PostgreSQL is the membership service and the judge of time: a node's lease is good
-- while lease_until is ahead of clock_timestamp() (PostgreSQL's clock, so the nodes' own
-- clocks never matter), and a node renews it about every second.
--
-- An incarnation numbers one life of a node: a node that lost its lease, or restarted,
-- comes back with a new one, and whatever it owned under the old one is free to claim.
CREATE SEQUENCE cluster_incarnation_seq;

CREATE TABLE cluster_nodes (
    node_id      TEXT PRIMARY KEY
                 CONSTRAINT cluster_nodes_id_check CHECK (length(node_id) BETWEEN 1 AND 200),
    -- Where the other nodes reach it (forwarded requests).
    url          TEXT NOT NULL,
    incarnation  BIGINT NOT NULL,
    lease_until  TIMESTAMPTZ NOT NULL,
    joined_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    renewed_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- A node shutting down hands its events over (owner_node = NULL) and deletes its row.

-- The owner of an event: the node (and its incarnation) whose actor decides for it. NULL
-- when nobody does. Claiming an event sets these and bumps owner_epoch in one transaction;
-- every flush checks owner_epoch, so a former owner can never write again.
ALTER TABLE events
    ADD COLUMN owner_node TEXT,
    ADD COLUMN owner_incarnation BIGINT;

CREATE INDEX idx_events_owner ON events (owner_node, owner_incarnation)
    WHERE owner_node IS NOT NULL;

-- Failed logins, shared by every node: throttling that lived in one node's memory would let
-- a guesser spread attempts over the nodes. One row per key and window.
CREATE TABLE login_failures (
    key           TEXT PRIMARY KEY,
    window_start  TIMESTAMPTZ NOT NULL,
    failures      INTEGER NOT NULL
);
CREATE INDEX idx_login_failures_window ON login_failures (window_start);
