--- @include "dg_purchase_session"
-- A pending purchase leaves its offer's holds (settled: paid, released, expired, ...):
-- its hold goes from the offer's holds, its record takes in its checkout session
-- (dg_purchase_session), and an entry of its own in the partition's expiry queue, as an
-- earlier release queued each hold, goes too (the queue now names the offer: the sweeper
-- queues it again at its first hold left). The caller saves `p`.
local function dg_purchase_unhold(holds_key, expiry_key, sessions_key, p)
  dg_purchase_session(sessions_key, p, true)
  redis.call('ZREM', holds_key, p.purchase_id)
  redis.call('ZREM', expiry_key, p.tenant_id .. ':' .. p.offer_id .. ':' .. p.purchase_id)
end
