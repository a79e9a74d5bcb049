--- @include "dg_error"
-- A purchase of one offer, as a webhook, a refund or its hold looks it up: the decoded
-- record of `purchase_id` in the tenant's purchases hash, when it is of `offer_id` and
-- that offer still exists. Returns the record, or nil and the NOT_FOUND answer.
local function dg_offer_purchase(purchases_key, offer_key, offer_id, purchase_id)
  local raw = redis.call('HGET', purchases_key, purchase_id)
  local p = raw and cjson.decode(raw)
  if not p or p.offer_id ~= offer_id or redis.call('EXISTS', offer_key) == 0 then
    return nil, dg_error('NOT_FOUND', {purchase_id = purchase_id})
  end
  return p, nil
end
