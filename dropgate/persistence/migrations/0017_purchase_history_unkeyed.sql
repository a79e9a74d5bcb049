-- A purchase's history no longer has a foreign key to offer_purchases (#19).
--
-- The persister writes each history row in the transaction that upserts its purchase,
-- from the same event and right after it (appliers/offers.py), so the key could never
-- refuse a row. Its check still ran once per row: one lookup per purchase version, with a
-- plan PostgreSQL makes once per connection. Made while offer_purchases was small and had
-- no statistics (autovacuum off, or before its first analyze), that plan used
-- offer_purchases_list_user, which leads with tenant_id but not purchase_id, and read the
-- tenant's whole index for every row: the persister fell from about 13,000 to about 1,100
-- purchases a second on 40,000, slower as the table grew, and a drop's log filled up
-- (`benchmarks.persister_breakdown --first 3`; BENCHMARKS.md, "The persister's own rate";
-- tests/persistence/test_purchase_history_plan.py).
--
-- A purchase deleted or truncated by hand still takes its history with it, as ON DELETE
-- CASCADE did: statement triggers, which cost nothing on the persister's inserts.
ALTER TABLE offer_purchase_history DROP CONSTRAINT offer_purchase_history_tenant_id_purchase_id_fkey;

CREATE FUNCTION offer_purchase_history_follow_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM offer_purchase_history h USING gone g
     WHERE h.tenant_id = g.tenant_id AND h.purchase_id = g.purchase_id;
    RETURN NULL;
END $$;

CREATE TRIGGER offer_purchase_history_follow_delete AFTER DELETE ON offer_purchases
REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION offer_purchase_history_follow_delete();

CREATE FUNCTION offer_purchase_history_follow_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE offer_purchase_history;
    RETURN NULL;
END $$;

CREATE TRIGGER offer_purchase_history_follow_truncate AFTER TRUNCATE ON offer_purchases
FOR EACH STATEMENT EXECUTE FUNCTION offer_purchase_history_follow_truncate();
