-- Two indexes that a wider one already serves go (#19).
--
-- Every purchase and every promo use a crowd writes is inserted into each index of its
-- table, by the persister, on the same two cores as the API. These two answer no query
-- that the lists' indexes (0013) do not answer as well, on the same leading columns:
--
-- - offer_purchases_by_user (tenant_id, user_id, created_at DESC): offer_purchases_list_user
--   (tenant_id, user_id, created_at, purchase_id) is read backwards for the newest first;
-- - promo_code_uses_customer (tenant_id, code, customer_id):
--   promo_code_uses_list_customer (tenant_id, code, customer_id, used_at, use_id).
--
-- Both keyed by the client's ids, so each insert into them landed on a random leaf.
DROP INDEX IF EXISTS offer_purchases_by_user;
DROP INDEX IF EXISTS promo_code_uses_customer;
