--- @include "dg_emit"
-- Store a purchase record the caller changed: its version and updated_ms move on, so
-- does the offer's version (the record carries it as offer_version: the offer's row in
-- PostgreSQL moves to it), and one offer.purchase event carries the whole record.
local function dg_purchase_save(log_key, purchases_key, offer_key, tenant_id, purchase_id, p, now)
  p.version = p.version + 1
  p.updated_ms = now
  p.offer_version = redis.call('HINCRBY', offer_key, 'version', 1)
  redis.call('HSET', purchases_key, purchase_id, cjson.encode(p))
  dg_emit(log_key, 'offer.purchase', 'purchase:' .. tenant_id .. ':' .. purchase_id, p.version, p)
end
