-- How far an event's lapsed holds have been written down as EXPIRED by the sweep
-- (boxoffice_engine::sweep): every reservation of the event stored ACTIVE with expires_at
-- at or before this moment has been rewritten. A round of the sweep visits only events
-- whose holds_expired_through has moved past it.
ALTER TABLE events ADD COLUMN holds_swept_through TIMESTAMPTZ;
