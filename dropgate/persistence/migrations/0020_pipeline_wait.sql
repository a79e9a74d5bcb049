-- A hot partition's next batch waits for the batch before it at one place (#19).
--
-- The persister applies a hot partition's next batch on a second connection while the batch
-- before it is still being applied (persister.py, *Pipelining*): both insert their own rows at
-- once, on two backends. They must not both take the hot counter row (the offer's, the code's):
-- the batch before takes it first and keeps it until its COMMIT, and only then the next one. So
-- each pipelined transaction holds an advisory lock of its own from its start (a key no other
-- batch uses), and names the one of the batch before it in the transaction-local setting
-- dropgate.pipeline_after; the first statement-level AFTER trigger of each table a pipelined
-- event writes (the name sorts it before the counters' triggers) waits here until that batch
-- has committed or rolled back. The new rows are in by then; the counters' UPDATE then reads
-- the row as the batch before left it. Nothing the batch before does waits on this one, so the
-- two cannot deadlock. Outside a pipeline the setting is unset and this returns at once.
CREATE FUNCTION dg_pipeline_wait() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    after text := current_setting('dropgate.pipeline_after', true);
BEGIN
    IF after <> '' THEN
        -- taken and given back at once: a wait, not a lock kept
        PERFORM pg_advisory_lock_shared(after::bigint);
        PERFORM pg_advisory_unlock_shared(after::bigint);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER offer_purchases_a_pipeline_wait AFTER INSERT OR UPDATE ON offer_purchases
FOR EACH STATEMENT EXECUTE FUNCTION dg_pipeline_wait();

CREATE TRIGGER invite_code_uses_a_pipeline_wait AFTER INSERT ON invite_code_uses
FOR EACH STATEMENT EXECUTE FUNCTION dg_pipeline_wait();

CREATE TRIGGER promo_code_uses_a_pipeline_wait AFTER INSERT ON promo_code_uses
FOR EACH STATEMENT EXECUTE FUNCTION dg_pipeline_wait();
