-- An event may sell without a per-buyer ticket limit (box-office accounts, load tests):
-- max_tickets_per_user NULL means no limit. A set limit keeps its 1..1000 range (the CHECK
-- passes NULL).
ALTER TABLE events ALTER COLUMN max_tickets_per_user DROP NOT NULL;
