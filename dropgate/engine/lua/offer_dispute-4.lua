--[[
  charge.dispute.created: the buyer disputes a payment. A paid or partially refunded
  purchase becomes `disputed`; its units stay sold. Any other status is left alone.
  The event id is recorded (7 days): a repeated delivery changes nothing.
  KEYS[1] partition log       <prefix>:{pN}:log
  KEYS[2] purchases hash      <prefix>:{pN}:t:<tenant>:purchases
  KEYS[3] offer hash          <prefix>:{pN}:t:<tenant>:offer:<offer>
  KEYS[4] webhook event mark  <prefix>:{pN}:t:<tenant>:whevt:<event>
  ARGV[1] backlog bound   ARGV[2] tenant id   ARGV[3] offer id   ARGV[4] purchase id
  ARGV[5] webhook event id   ARGV[6] webhook event type
  Returns {"outcome": "disputed" | "noop" | "duplicate", "status": s}
  Errors: NOT_FOUND, PERSISTENCE_LAGGING
  Writes KEYS[2..4]; appends offer.purchase (on a change) and offer.webhook to KEYS[1].
]]
--- @include "dg_error"
--- @include "dg_now_ms"
--- @include "dg_emit"
--- @include "dg_backlog_full"
local full = dg_backlog_full(KEYS[1], ARGV[1])
if full then return dg_error('PERSISTENCE_LAGGING', full) end
local raw = redis.call('HGET', KEYS[2], ARGV[4])
local p = raw and cjson.decode(raw)
if not p or p.offer_id ~= ARGV[3] or redis.call('EXISTS', KEYS[3]) == 0 then
  return dg_error('NOT_FOUND', {purchase_id = ARGV[4]})
end
if redis.call('EXISTS', KEYS[4]) == 1 then
  return cjson.encode({outcome = 'duplicate', status = p.status})
end
local now = dg_now_ms()
local outcome = 'noop'
if p.status == 'paid' or p.status == 'partially_refunded' then
  p.status = 'disputed'
  p.version = p.version + 1
  p.updated_ms = now
  p.offer_version = redis.call('HINCRBY', KEYS[3], 'version', 1)
  redis.call('HSET', KEYS[2], ARGV[4], cjson.encode(p))
  dg_emit(KEYS[1], 'offer.purchase', 'purchase:' .. ARGV[2] .. ':' .. ARGV[4], p.version, p)
  outcome = 'disputed'
end
redis.call('SET', KEYS[4], outcome, 'PX', 7 * 86400000)
dg_emit(KEYS[1], 'offer.webhook', 'webhook:' .. ARGV[5], 1, {event_id = ARGV[5],
  tenant_id = ARGV[2], purchase_id = ARGV[4], type = ARGV[6], outcome = outcome, at_ms = now})
return cjson.encode({outcome = outcome, status = p.status})
