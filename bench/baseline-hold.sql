-- The conventional design's hold, for pgbench: one transaction that decrements the
-- section's availability with a guarded UPDATE (the row lock every buyer queues on) and
-- inserts the reservation row, against boxoffice's own schema and constraints.
-- bench/onsale.sh sets :section, :event and :users.
\set user_offset random(0, :users - 1)
BEGIN;
WITH taken AS (
    UPDATE event_sections SET available = available - 2, held = held + 2
    WHERE id = :section AND available >= 2
    RETURNING id
)
INSERT INTO reservations (id, user_id, event_id, section_id, quantity, status, expires_at, created_at, updated_at)
SELECT nextval('reservations_id_seq'), :first_user + :user_offset, :event, taken.id, 2, 'ACTIVE',
       now() + interval '10 minutes', now(), now()
FROM taken;
COMMIT;
