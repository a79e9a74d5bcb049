-- An invite or promo use's code is checked once per statement, not once per row (#19).
--
-- The foreign keys (tenant_id, code) -> invite_codes / promo_codes ran their check for every
-- use row the persister wrote: a lookup of the code that locks it (FOR KEY SHARE), during a
-- crowd the same hot row a thousand times per statement. Without it PostgreSQL spent 11.8
-- instead of 15.8 us of CPU per invite use and 17.3 instead of 22.0 per promo use
-- (`benchmarks.persister --variants main,after`; BENCHMARKS.md, "The uses' keys per
-- statement"), as 0019 found for the purchases' key to offers.
--
-- The same rules, kept by triggers, each raising what the key raised (SQLSTATE 23503, under
-- the key's name, which the persister dead-letters as before):
-- - writing uses: once per statement, each code named is locked FOR KEY SHARE, as the key's
--   check did (no delete or change of its key until this commits), and a use whose code does
--   not exist fails the statement;
-- - deleting a code takes its uses with it (the keys' ON DELETE CASCADE); truncating the codes
--   truncates their uses (as 0017 does for the purchases' history);
-- - changing a code's key while a use names it is refused (the keys' NO ACTION on update).
-- A delete racing an uncommitted use waits on that use's lock, then takes it; a use racing an
-- uncommitted delete waits on the delete's lock, then finds no code.
ALTER TABLE invite_code_uses DROP CONSTRAINT invite_code_uses_tenant_id_code_fkey;
ALTER TABLE promo_code_uses DROP CONSTRAINT promo_code_uses_tenant_id_code_fkey;

-- uses side: TG_ARGV[0] the codes' table, TG_ARGV[1] the key this replaces
CREATE FUNCTION dg_use_code_exists() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
DECLARE
    missing_tenant text;
    missing_code text;
BEGIN
    EXECUTE format(
        'SELECT 1 FROM %I c JOIN (SELECT DISTINCT tenant_id, code FROM uses_written) d
            ON c.tenant_id = d.tenant_id AND c.code = d.code FOR KEY SHARE OF c', TG_ARGV[0]);
    EXECUTE format(
        'SELECT d.tenant_id, d.code FROM (SELECT DISTINCT tenant_id, code FROM uses_written) d
          WHERE NOT EXISTS (SELECT 1 FROM %I c WHERE c.tenant_id = d.tenant_id AND c.code = d.code)
          LIMIT 1', TG_ARGV[0]) INTO missing_tenant, missing_code;
    IF missing_code IS NOT NULL THEN
        RAISE foreign_key_violation USING
            MESSAGE = format('insert or update on table "%s" violates foreign key constraint "%s"',
                             TG_TABLE_NAME, TG_ARGV[1]),
            DETAIL = format('Key (tenant_id, code)=(%s, %s) is not present in table "%s".',
                            missing_tenant, missing_code, TG_ARGV[0]),
            TABLE = TG_TABLE_NAME, CONSTRAINT = TG_ARGV[1];
    END IF;
    RETURN NULL;
END $$;

-- codes side, after a DELETE or TRUNCATE: TG_ARGV[0] the uses' table
CREATE FUNCTION dg_code_uses_follow() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        EXECUTE format('TRUNCATE %I', TG_ARGV[0]);
    ELSE
        EXECUTE format('DELETE FROM %I u USING codes_gone g
                         WHERE u.tenant_id = g.tenant_id AND u.code = g.code', TG_ARGV[0]);
    END IF;
    RETURN NULL;
END $$;

-- codes side, before a change of a code's key: TG_ARGV[0] the uses' table, TG_ARGV[1] the key
CREATE FUNCTION dg_code_key_kept() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
DECLARE
    used boolean;
BEGIN
    IF OLD.tenant_id IS DISTINCT FROM NEW.tenant_id OR OLD.code IS DISTINCT FROM NEW.code THEN
        EXECUTE format('SELECT EXISTS (SELECT 1 FROM %I u WHERE u.tenant_id = $1 AND u.code = $2)',
                       TG_ARGV[0]) INTO used USING OLD.tenant_id, OLD.code;
        IF used THEN
            RAISE foreign_key_violation USING
                MESSAGE = format('update or delete on table "%s" violates foreign key constraint "%s" '
                                 'on table "%s"', TG_TABLE_NAME, TG_ARGV[1], TG_ARGV[0]),
                DETAIL = format('Key (tenant_id, code)=(%s, %s) is still referenced from table "%s".',
                                OLD.tenant_id, OLD.code, TG_ARGV[0]),
                TABLE = TG_TABLE_NAME, CONSTRAINT = TG_ARGV[1];
        END IF;
    END IF;
    RETURN NEW;
END $$;

-- the triggers, alike on both tables (their names sort after *_a_pipeline_wait: 0020's wait
-- stays the first trigger)
DO $$
DECLARE
    kind text;
BEGIN
    FOREACH kind IN ARRAY ARRAY['invite', 'promo'] LOOP
        EXECUTE format($t$
            CREATE TRIGGER %1$s_code_uses_code_exists_inserted AFTER INSERT ON %1$s_code_uses
            REFERENCING NEW TABLE AS uses_written FOR EACH STATEMENT
            EXECUTE FUNCTION dg_use_code_exists('%1$s_codes', '%1$s_code_uses_tenant_id_code_fkey');
            CREATE TRIGGER %1$s_code_uses_code_exists_updated AFTER UPDATE ON %1$s_code_uses
            REFERENCING NEW TABLE AS uses_written FOR EACH STATEMENT
            EXECUTE FUNCTION dg_use_code_exists('%1$s_codes', '%1$s_code_uses_tenant_id_code_fkey');
            CREATE TRIGGER %1$s_codes_uses_follow_delete AFTER DELETE ON %1$s_codes
            REFERENCING OLD TABLE AS codes_gone FOR EACH STATEMENT
            EXECUTE FUNCTION dg_code_uses_follow('%1$s_code_uses');
            CREATE TRIGGER %1$s_codes_uses_follow_truncate AFTER TRUNCATE ON %1$s_codes
            FOR EACH STATEMENT EXECUTE FUNCTION dg_code_uses_follow('%1$s_code_uses');
            CREATE TRIGGER %1$s_codes_key_kept BEFORE UPDATE OF tenant_id, code ON %1$s_codes
            FOR EACH ROW EXECUTE FUNCTION dg_code_key_kept('%1$s_code_uses', '%1$s_code_uses_tenant_id_code_fkey');
        $t$, kind);
    END LOOP;
END $$;
