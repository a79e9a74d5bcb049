-- Promo codes and their uses. times_used and total_bonus_issued are derived from the
-- use rows by triggers (statement-level, so a batch of uses costs one UPDATE per code):
-- an INSERT, DELETE, UPDATE or TRUNCATE of uses, by the persister or by hand, moves
-- them; nothing else may (a direct write of the counters is refused). The persister
-- inserts uses and deletes rolled-back ones; it never writes a counter.
-- Money: bigint minor units. Percent: integer hundredths of a basis point (12.5% = 125000).

CREATE TABLE promo_codes (
    tenant_id          text NOT NULL,
    code               text NOT NULL,
    bonus_kind         text NOT NULL CHECK (bonus_kind IN ('fixed', 'percent')),
    bonus_amount       bigint,
    bonus_percent      integer,
    currency           text NOT NULL CHECK (currency ~ '^[a-z]{3}$'),
    max_uses           integer CHECK (max_uses >= 1),  -- NULL: unlimited
    per_customer_limit integer NOT NULL DEFAULT 1 CHECK (per_customer_limit >= 1),
    starts_at          timestamptz,
    ends_at            timestamptz,
    active             boolean NOT NULL,
    times_used         integer NOT NULL DEFAULT 0 CHECK (times_used >= 0),
    total_bonus_issued bigint NOT NULL DEFAULT 0 CHECK (total_bonus_issued >= 0),
    created_at         timestamptz NOT NULL,
    version            bigint NOT NULL,
    PRIMARY KEY (tenant_id, code),
    CHECK ((bonus_kind = 'fixed' AND bonus_amount > 0 AND bonus_percent IS NULL)
        OR (bonus_kind = 'percent' AND bonus_percent BETWEEN 1 AND 1000000 AND bonus_amount IS NULL)),
    CHECK (max_uses IS NULL OR times_used <= max_uses),
    CHECK (ends_at IS NULL OR starts_at IS NULL OR ends_at > starts_at)
);

CREATE TABLE promo_code_uses (
    tenant_id    text NOT NULL,
    code         text NOT NULL,
    use_id       text NOT NULL,
    customer_id  text NOT NULL,
    base_amount  bigint NOT NULL CHECK (base_amount > 0),
    bonus_amount bigint NOT NULL CHECK (bonus_amount >= 0),
    used_at      timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, code, use_id),
    FOREIGN KEY (tenant_id, code) REFERENCES promo_codes (tenant_id, code) ON DELETE CASCADE
);

CREATE INDEX promo_code_uses_customer ON promo_code_uses (tenant_id, code, customer_id);

-- Uses -> counters. One function for the four triggers below; each branch reads only
-- the transition tables its trigger declares.
CREATE FUNCTION promo_code_uses_counters() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        UPDATE promo_codes p
           SET times_used = p.times_used + d.n, total_bonus_issued = p.total_bonus_issued + d.bonus
          FROM (SELECT tenant_id, code, count(*) AS n, sum(bonus_amount) AS bonus
                  FROM promo_uses_added GROUP BY tenant_id, code) d
         WHERE p.tenant_id = d.tenant_id AND p.code = d.code;
    ELSIF TG_OP = 'DELETE' THEN
        UPDATE promo_codes p
           SET times_used = p.times_used - d.n, total_bonus_issued = p.total_bonus_issued - d.bonus
          FROM (SELECT tenant_id, code, count(*) AS n, sum(bonus_amount) AS bonus
                  FROM promo_uses_removed GROUP BY tenant_id, code) d
         WHERE p.tenant_id = d.tenant_id AND p.code = d.code;
    ELSIF TG_OP = 'UPDATE' THEN
        UPDATE promo_codes p
           SET times_used = p.times_used + d.n, total_bonus_issued = p.total_bonus_issued + d.bonus
          FROM (SELECT tenant_id, code, sum(n) AS n, sum(bonus) AS bonus
                  FROM (SELECT tenant_id, code, 1 AS n, bonus_amount AS bonus FROM promo_uses_added
                        UNION ALL
                        SELECT tenant_id, code, -1, -bonus_amount FROM promo_uses_removed) x
                 GROUP BY tenant_id, code) d
         WHERE p.tenant_id = d.tenant_id AND p.code = d.code AND (d.n <> 0 OR d.bonus <> 0);
    ELSIF TG_OP = 'TRUNCATE' THEN
        UPDATE promo_codes SET times_used = 0, total_bonus_issued = 0
         WHERE times_used <> 0 OR total_bonus_issued <> 0;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER promo_code_uses_inserted AFTER INSERT ON promo_code_uses
REFERENCING NEW TABLE AS promo_uses_added
FOR EACH STATEMENT EXECUTE FUNCTION promo_code_uses_counters();

CREATE TRIGGER promo_code_uses_deleted AFTER DELETE ON promo_code_uses
REFERENCING OLD TABLE AS promo_uses_removed
FOR EACH STATEMENT EXECUTE FUNCTION promo_code_uses_counters();

CREATE TRIGGER promo_code_uses_updated AFTER UPDATE ON promo_code_uses
REFERENCING OLD TABLE AS promo_uses_removed NEW TABLE AS promo_uses_added
FOR EACH STATEMENT EXECUTE FUNCTION promo_code_uses_counters();

CREATE TRIGGER promo_code_uses_truncated AFTER TRUNCATE ON promo_code_uses
FOR EACH STATEMENT EXECUTE FUNCTION promo_code_uses_counters();

-- The counters have one writer: the triggers above. A new code starts at zero (it
-- has no uses yet: the foreign key), and a direct UPDATE of a counter is refused,
-- unless promo_codes_sync_counters() below is recomputing them.
CREATE FUNCTION promo_codes_guard_counters() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        NEW.times_used := 0;
        NEW.total_bonus_issued := 0;
    ELSIF (NEW.times_used, NEW.total_bonus_issued) IS DISTINCT FROM (OLD.times_used, OLD.total_bonus_issued)
          AND pg_trigger_depth() < 2
          AND current_setting('dropgate.promo_counter_sync', true) IS DISTINCT FROM 'on' THEN
        RAISE EXCEPTION 'promo_codes.times_used and total_bonus_issued follow promo_code_uses; insert or delete uses instead'
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER promo_codes_guard_counters BEFORE INSERT OR UPDATE ON promo_codes
FOR EACH ROW EXECUTE FUNCTION promo_codes_guard_counters();

-- Recompute every code's counters from its uses; returns how many codes had drifted.
-- Run at migration time (below) as the source system's migration did, and available
-- to later migrations and operators: SELECT promo_codes_sync_counters();
CREATE FUNCTION promo_codes_sync_counters() RETURNS integer LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
DECLARE
    fixed integer;
BEGIN
    PERFORM set_config('dropgate.promo_counter_sync', 'on', true);
    UPDATE promo_codes p
       SET times_used = t.n, total_bonus_issued = t.bonus
      FROM (SELECT c.tenant_id, c.code, count(u.use_id) AS n, coalesce(sum(u.bonus_amount), 0) AS bonus
              FROM promo_codes c
              LEFT JOIN promo_code_uses u ON u.tenant_id = c.tenant_id AND u.code = c.code
             GROUP BY c.tenant_id, c.code) t
     WHERE p.tenant_id = t.tenant_id AND p.code = t.code
       AND (p.times_used, p.total_bonus_issued) IS DISTINCT FROM (t.n, t.bonus);
    GET DIAGNOSTICS fixed = ROW_COUNT;
    PERFORM set_config('dropgate.promo_counter_sync', 'off', true);
    RETURN fixed;
END $$;

SELECT promo_codes_sync_counters();
