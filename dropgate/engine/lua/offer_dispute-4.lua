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
--- @include "dg_offer_purchase"
--- @include "dg_purchase_save"
--- @include "dg_webhook_done"
local full = dg_backlog_full(KEYS[1], ARGV[1], 2)  -- the purchase's event, the webhook's
if full then return dg_error('PERSISTENCE_LAGGING', full) end
local p, missing = dg_offer_purchase(KEYS[2], KEYS[3], ARGV[3], ARGV[4])
if missing then return missing end
if redis.call('EXISTS', KEYS[4]) == 1 then
  return cjson.encode({outcome = 'duplicate', status = p.status})
end
local now = dg_now_ms()
local outcome = 'noop'
if p.status == 'paid' or p.status == 'partially_refunded' then
  p.status = 'disputed'
  dg_purchase_save(KEYS[1], KEYS[2], KEYS[3], ARGV[2], ARGV[4], p, now)
  outcome = 'disputed'
end
dg_webhook_done(KEYS[1], KEYS[4], ARGV[5], ARGV[2], ARGV[4], ARGV[6], outcome, now)
return cjson.encode({outcome = outcome, status = p.status})
