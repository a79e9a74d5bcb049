-- A purchase's offer is checked once per statement, not once per row (#19).
--
-- The foreign key (tenant_id, offer_id) -> offers ran its check for every purchase row the
-- persister wrote: a lookup of the offer that locks it (FOR KEY SHARE), on a hot offer the
-- same row a thousand times per statement. That was 3.4-4.3 ms of a 1,000-hold statement's
-- 31 (`benchmarks.purchase_statement --undo 19`), on the offers persister's one partition.
--
-- The same rule, kept by triggers, each named after the key it replaces:
-- - writing purchases: once per statement, each offer named is locked FOR KEY SHARE, as the
--   key's check did (no delete or change of its key until this commits), and a purchase
--   whose offer does not exist fails the statement with foreign_key_violation (SQLSTATE
--   23503, what the key raised: the persister dead-letters such an event, as before);
-- - deleting an offer, or changing its key, while a purchase names it; truncating offers
--   while any purchase exists: foreign_key_violation, as the key's NO ACTION.
-- A delete racing an uncommitted purchase waits on that purchase's lock, then sees it; a
-- purchase racing an uncommitted delete waits on the delete's lock, then finds no offer.
ALTER TABLE offer_purchases DROP CONSTRAINT offer_purchases_tenant_id_offer_id_fkey;

CREATE FUNCTION offer_purchases_offer_exists() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
DECLARE
    missing record;
BEGIN
    PERFORM 1 FROM offers o
      JOIN (SELECT DISTINCT tenant_id, offer_id FROM purchases_written) d
        ON o.tenant_id = d.tenant_id AND o.offer_id = d.offer_id
       FOR KEY SHARE OF o;
    SELECT d.tenant_id, d.offer_id INTO missing
      FROM (SELECT DISTINCT tenant_id, offer_id FROM purchases_written) d
     WHERE NOT EXISTS (SELECT 1 FROM offers o
                        WHERE o.tenant_id = d.tenant_id AND o.offer_id = d.offer_id)
     LIMIT 1;
    IF FOUND THEN
        RAISE foreign_key_violation USING
            MESSAGE = 'insert or update on table "offer_purchases" violates foreign key constraint '
                      '"offer_purchases_tenant_id_offer_id_fkey"',
            DETAIL = format('Key (tenant_id, offer_id)=(%s, %s) is not present in table "offers".',
                            missing.tenant_id, missing.offer_id),
            TABLE = 'offer_purchases', CONSTRAINT = 'offer_purchases_tenant_id_offer_id_fkey';
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER offer_purchases_offer_exists_inserted AFTER INSERT ON offer_purchases
REFERENCING NEW TABLE AS purchases_written
FOR EACH STATEMENT EXECUTE FUNCTION offer_purchases_offer_exists();

CREATE TRIGGER offer_purchases_offer_exists_updated AFTER UPDATE ON offer_purchases
REFERENCING NEW TABLE AS purchases_written
FOR EACH STATEMENT EXECUTE FUNCTION offer_purchases_offer_exists();

CREATE FUNCTION offers_keep_purchased() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        IF EXISTS (SELECT 1 FROM offer_purchases) THEN
            RAISE foreign_key_violation USING
                MESSAGE = 'cannot truncate offers: offer_purchases names its rows '
                          '(offer_purchases_tenant_id_offer_id_fkey)',
                TABLE = 'offers', CONSTRAINT = 'offer_purchases_tenant_id_offer_id_fkey';
        END IF;
        RETURN NULL;
    END IF;
    IF (TG_OP = 'DELETE' OR OLD.tenant_id IS DISTINCT FROM NEW.tenant_id
                         OR OLD.offer_id IS DISTINCT FROM NEW.offer_id)
       AND EXISTS (SELECT 1 FROM offer_purchases p
                    WHERE p.tenant_id = OLD.tenant_id AND p.offer_id = OLD.offer_id) THEN
        RAISE foreign_key_violation USING
            MESSAGE = 'update or delete on table "offers" violates foreign key constraint '
                      '"offer_purchases_tenant_id_offer_id_fkey" on table "offer_purchases"',
            DETAIL = format('Key (tenant_id, offer_id)=(%s, %s) is still referenced from table '
                            '"offer_purchases".', OLD.tenant_id, OLD.offer_id),
            TABLE = 'offers', CONSTRAINT = 'offer_purchases_tenant_id_offer_id_fkey';
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER offers_keep_purchased BEFORE DELETE OR UPDATE OF tenant_id, offer_id ON offers
FOR EACH ROW EXECUTE FUNCTION offers_keep_purchased();

CREATE TRIGGER offers_keep_purchased_truncated BEFORE TRUNCATE ON offers
FOR EACH STATEMENT EXECUTE FUNCTION offers_keep_purchased();
