-- Release one pending purchase's hold: its units go back (reserved -= quantity), the
-- purchase becomes `status` ('expired', 'released', 'canceled' or 'failed'), it leaves
-- the offer's holds and the partition's expiry queue, and one offer.purchase event is
-- appended (needs dg_purchase_units and dg_emit).
-- `p` is the decoded purchase record; the caller checked p.status == 'pending'.
local function dg_offer_release(log_key, offer_key, holds_key, expiry_key, purchases_key,
                                users_key, p, status, now)
  dg_purchase_units(offer_key, users_key, p, 'none')
  p.offer_version = redis.call('HINCRBY', offer_key, 'version', 1)
  redis.call('ZREM', holds_key, p.purchase_id)
  redis.call('ZREM', expiry_key, p.tenant_id .. ':' .. p.offer_id .. ':' .. p.purchase_id)
  p.status = status
  p.version = p.version + 1
  p.updated_ms = now
  redis.call('HSET', purchases_key, p.purchase_id, cjson.encode(p))
  dg_emit(log_key, 'offer.purchase', 'purchase:' .. p.tenant_id .. ':' .. p.purchase_id,
    p.version, p)
end
