-- Invite codes and their uses. used_count is kept by triggers from the uses, so no
-- writer (the persister or SQL by hand) can make it drift from the rows.

CREATE TABLE invite_codes (
    tenant_id  text NOT NULL,
    code       text NOT NULL,
    max_uses   integer NOT NULL CHECK (max_uses >= 0),
    used_count integer NOT NULL DEFAULT 0,
    active     boolean NOT NULL,
    expires_at timestamptz,
    created_at timestamptz NOT NULL,
    version    bigint NOT NULL,
    PRIMARY KEY (tenant_id, code)
);

CREATE TABLE invite_code_uses (
    tenant_id text NOT NULL,
    code      text NOT NULL,
    user_id   text NOT NULL,
    used_at   timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, code, user_id),
    FOREIGN KEY (tenant_id, code) REFERENCES invite_codes (tenant_id, code) ON DELETE CASCADE
);

CREATE FUNCTION invite_code_uses_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        UPDATE invite_codes SET used_count = used_count + 1
         WHERE tenant_id = NEW.tenant_id AND code = NEW.code;
        RETURN NEW;
    END IF;
    UPDATE invite_codes SET used_count = used_count - 1
     WHERE tenant_id = OLD.tenant_id AND code = OLD.code;
    RETURN OLD;
END $$;

CREATE TRIGGER invite_code_uses_count
AFTER INSERT OR DELETE ON invite_code_uses
FOR EACH ROW EXECUTE FUNCTION invite_code_uses_count();
