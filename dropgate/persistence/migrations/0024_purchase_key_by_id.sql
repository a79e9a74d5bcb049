-- offer_purchases' primary key leads with the purchase id, and the index by id alone goes (#19).
--
-- The return pages find a purchase by its id alone (/checkout/done?purchase_id=: the buyer's
-- browser need not know the tenant), through offer_purchases_by_purchase_id (0009). The
-- primary key (tenant_id, purchase_id) held the same ids once more, so every purchase a
-- crowd holds was inserted into two indexes for one key: 2.3-2.5 us of PostgreSQL per
-- purchase on the API's cores (BENCHMARKS.md, "A noisy host; what each index of a purchase
-- costs PostgreSQL"). Keyed (purchase_id, tenant_id), the primary key serves both lookups:
-- by id alone on its leading column, by tenant and id on both.
--
-- Nothing else changes: the same columns stay unique, so two tenants' purchases may still
-- share an id, the persister's upsert (ON CONFLICT (tenant_id, purchase_id), which names the
-- columns, not their order) and a persister of an earlier release still arbitrate on it, and
-- the refunds' foreign key references the same columns (it is dropped and added again only
-- because it depends on the old key's index).
--
-- It builds the new key over the whole table under the table's lock, as any new index
-- would: on a large table that takes a while (about as long as CREATE INDEX on it), during
-- which the persister's purchases and the lists wait; the log holds the events meanwhile
-- (up to DROPGATE_MAX_BACKLOG). Run `dropgate migrate` at a quiet moment.
ALTER TABLE offer_refunds DROP CONSTRAINT offer_refunds_tenant_id_purchase_id_fkey;
ALTER TABLE offer_purchases DROP CONSTRAINT offer_purchases_pkey;
ALTER TABLE offer_purchases ADD CONSTRAINT offer_purchases_pkey PRIMARY KEY (purchase_id, tenant_id);
ALTER TABLE offer_refunds ADD CONSTRAINT offer_refunds_tenant_id_purchase_id_fkey
    FOREIGN KEY (tenant_id, purchase_id) REFERENCES offer_purchases (tenant_id, purchase_id)
        ON DELETE CASCADE;
DROP INDEX IF EXISTS offer_purchases_by_purchase_id;
