-- Rolled-back promo uses are kept (#17): a rollback moves its use row out of
-- promo_code_uses (whose rows stay exactly the live uses: the counters' triggers,
-- reconcile and restore read them) into this table, with the time of the rollback.
-- GET /v1/promos/{code}/uses lists both through promo_code_uses_listed, each use with
-- its `rolled_back`. Rollbacks applied before this migration deleted their rows.

CREATE TABLE promo_code_rolled_back_uses (
    tenant_id      text NOT NULL,
    code           text NOT NULL,
    use_id         text NOT NULL,
    customer_id    text NOT NULL,
    base_amount    bigint NOT NULL,
    bonus_amount   bigint NOT NULL,
    used_at        timestamptz NOT NULL,
    rolled_back_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, code, use_id),
    FOREIGN KEY (tenant_id, code) REFERENCES promo_codes (tenant_id, code) ON DELETE CASCADE
);
CREATE INDEX promo_code_rolled_back_uses_list
    ON promo_code_rolled_back_uses (tenant_id, code, used_at, use_id);
CREATE INDEX promo_code_rolled_back_uses_list_customer
    ON promo_code_rolled_back_uses (tenant_id, code, customer_id, used_at, use_id);

-- One list over both (a UNION ALL the planner walks as a merge of the two indexes).
CREATE VIEW promo_code_uses_listed AS
    SELECT tenant_id, code, use_id, customer_id, base_amount, bonus_amount, used_at,
           NULL::timestamptz AS rolled_back_at
      FROM promo_code_uses
    UNION ALL
    SELECT tenant_id, code, use_id, customer_id, base_amount, bonus_amount, used_at,
           rolled_back_at
      FROM promo_code_rolled_back_uses;
