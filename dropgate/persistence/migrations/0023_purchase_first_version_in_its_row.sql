-- A purchase's first version is no longer written as a history row (#19): its own row holds it.
--
-- A purchase is created by its hold and only so (offer_purchase_batch-10.lua): version 1,
-- status 'pending', at its created time. So the first history row of every purchase was
-- (tenant_id, purchase_id, 1, 'pending', created_at) of its row in offer_purchases, and a
-- crowd's purchases are all at version 1: the persister wrote a heap row and an index entry
-- per purchase that said nothing the purchase row does not, 3.7-4.6 us of PostgreSQL per
-- purchase on the API's cores (BENCHMARKS.md, "A purchase's first version").
--
-- The table keeps the versions after the first, as offer_purchase_changes, and
-- offer_purchase_history becomes a view with the columns and the rows the table had: the
-- first versions from offer_purchases, the rest from offer_purchase_changes. Its readers
-- (SQL by hand, reports) see what they saw; a purchase deleted or truncated by hand still
-- takes its history with it (0017's triggers, now on the table).
--
-- A persister of an earlier release writes to offer_purchase_history, which is no longer a
-- table: a view of a UNION takes no INSERT (SQLSTATE 55000). That is not a data error, so
-- it retries the batch without limit and dead-letters nothing, until the new release
-- replaces it (tests/persistence/test_purchase_history_view.py).
ALTER TABLE offer_purchase_history RENAME TO offer_purchase_changes;
ALTER INDEX offer_purchase_history_pkey RENAME TO offer_purchase_changes_pkey;
DELETE FROM offer_purchase_changes WHERE version = 1;

CREATE VIEW offer_purchase_history (tenant_id, purchase_id, version, status, at) AS
    SELECT tenant_id, purchase_id, 1::bigint, 'pending'::text, created_at FROM offer_purchases
    UNION ALL
    SELECT tenant_id, purchase_id, version, status, at FROM offer_purchase_changes;

CREATE OR REPLACE FUNCTION offer_purchase_history_follow_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM offer_purchase_changes h USING gone g
     WHERE h.tenant_id = g.tenant_id AND h.purchase_id = g.purchase_id;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION offer_purchase_history_follow_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE offer_purchase_changes;
    RETURN NULL;
END $$;
