-- Counters of hot rows kept by statement-level triggers (#19).
--
-- offers.reserved/sold and invite_codes.used_count were kept by row-level triggers:
-- a persister batch of 1,000 purchases of one hot offer ran 1,000 UPDATEs of the same
-- offers row in one transaction, each creating a new version of it; that made the
-- purchase insert about 2.5x slower than with no trigger at all. The triggers below
-- read the statement's transition tables and move each counter once per statement,
-- by the net change of its rows (as 0004's promo triggers do). The counters still
-- have one writer and follow the rows whatever SQL changes them.
--
-- PostgreSQL allows transition tables only on triggers with a single event and no
-- column list: one trigger per event, and the UPDATE one nets the old rows out of the
-- new ones (an update that changes neither status, units nor quantity nets to zero
-- and touches no offer).

DROP TRIGGER offer_purchases_count ON offer_purchases;
DROP FUNCTION offer_purchases_count();

CREATE FUNCTION offer_purchases_counters() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        UPDATE offers o SET reserved = o.reserved + d.reserved, sold = o.sold + d.sold
          FROM (SELECT tenant_id, offer_id,
                       coalesce(sum(quantity) FILTER (WHERE status = 'pending'), 0) AS reserved,
                       coalesce(sum(quantity) FILTER (WHERE units = 'sold'), 0) AS sold
                  FROM purchases_added GROUP BY tenant_id, offer_id) d
         WHERE o.tenant_id = d.tenant_id AND o.offer_id = d.offer_id
           AND (d.reserved <> 0 OR d.sold <> 0);
    ELSIF TG_OP = 'DELETE' THEN
        UPDATE offers o SET reserved = o.reserved - d.reserved, sold = o.sold - d.sold
          FROM (SELECT tenant_id, offer_id,
                       coalesce(sum(quantity) FILTER (WHERE status = 'pending'), 0) AS reserved,
                       coalesce(sum(quantity) FILTER (WHERE units = 'sold'), 0) AS sold
                  FROM purchases_removed GROUP BY tenant_id, offer_id) d
         WHERE o.tenant_id = d.tenant_id AND o.offer_id = d.offer_id
           AND (d.reserved <> 0 OR d.sold <> 0);
    ELSIF TG_OP = 'UPDATE' THEN
        UPDATE offers o SET reserved = o.reserved + d.reserved, sold = o.sold + d.sold
          FROM (SELECT tenant_id, offer_id, sum(reserved) AS reserved, sum(sold) AS sold
                  FROM (SELECT tenant_id, offer_id,
                               CASE WHEN status = 'pending' THEN quantity ELSE 0 END AS reserved,
                               CASE WHEN units = 'sold' THEN quantity ELSE 0 END AS sold
                          FROM purchases_added
                        UNION ALL
                        SELECT tenant_id, offer_id,
                               CASE WHEN status = 'pending' THEN -quantity ELSE 0 END,
                               CASE WHEN units = 'sold' THEN -quantity ELSE 0 END
                          FROM purchases_removed) x
                 GROUP BY tenant_id, offer_id) d
         WHERE o.tenant_id = d.tenant_id AND o.offer_id = d.offer_id
           AND (d.reserved <> 0 OR d.sold <> 0);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER offer_purchases_inserted AFTER INSERT ON offer_purchases
REFERENCING NEW TABLE AS purchases_added
FOR EACH STATEMENT EXECUTE FUNCTION offer_purchases_counters();

CREATE TRIGGER offer_purchases_deleted AFTER DELETE ON offer_purchases
REFERENCING OLD TABLE AS purchases_removed
FOR EACH STATEMENT EXECUTE FUNCTION offer_purchases_counters();

CREATE TRIGGER offer_purchases_updated AFTER UPDATE ON offer_purchases
REFERENCING OLD TABLE AS purchases_removed NEW TABLE AS purchases_added
FOR EACH STATEMENT EXECUTE FUNCTION offer_purchases_counters();


DROP TRIGGER invite_code_uses_count ON invite_code_uses;
DROP FUNCTION invite_code_uses_count();

CREATE FUNCTION invite_code_uses_counters() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        UPDATE invite_codes i SET used_count = i.used_count + d.n
          FROM (SELECT tenant_id, code, count(*) AS n FROM uses_added GROUP BY tenant_id, code) d
         WHERE i.tenant_id = d.tenant_id AND i.code = d.code;
    ELSIF TG_OP = 'DELETE' THEN
        UPDATE invite_codes i SET used_count = i.used_count - d.n
          FROM (SELECT tenant_id, code, count(*) AS n FROM uses_removed GROUP BY tenant_id, code) d
         WHERE i.tenant_id = d.tenant_id AND i.code = d.code;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER invite_code_uses_inserted AFTER INSERT ON invite_code_uses
REFERENCING NEW TABLE AS uses_added
FOR EACH STATEMENT EXECUTE FUNCTION invite_code_uses_counters();

CREATE TRIGGER invite_code_uses_deleted AFTER DELETE ON invite_code_uses
REFERENCING OLD TABLE AS uses_removed
FOR EACH STATEMENT EXECUTE FUNCTION invite_code_uses_counters();
