--[[
  Release one purchase's hold now: after a payment-provider failure ('released'),
  on checkout.session.expired ('expired'), on a cancel (POST .../cancel, 'canceled')
  or on checkout.session.async_payment_failed ('failed'). Only a pending purchase
  changes (units back exactly once); any
  other status (paid, already released) is left alone, so a late or repeated
  release is a no-op. A webhook's event id is recorded (7 days) so a repeated
  delivery changes nothing.
  KEYS[1] partition log       <prefix>:{pN}:log
  KEYS[2] offer hash          <prefix>:{pN}:t:<tenant>:offer:<offer>
  KEYS[3] offer holds zset    <prefix>:{pN}:t:<tenant>:offer:<offer>:holds
  KEYS[4] hold expiry zset    <prefix>:{pN}:offer_holds
  KEYS[5] purchases hash      <prefix>:{pN}:t:<tenant>:purchases
  KEYS[6] webhook event mark  <prefix>:{pN}:t:<tenant>:whevt:<event> (unused without one)
  KEYS[7] offer users hash    <prefix>:{pN}:t:<tenant>:offer:<offer>:users
  KEYS[8] purchase sessions   <prefix>:{pN}:t:<tenant>:purchase_sessions (lib/dg_purchase_session.lua)
  ARGV[1] backlog bound   ARGV[2] tenant id   ARGV[3] offer id   ARGV[4] purchase id
  ARGV[5] new status ('released' | 'expired' | 'canceled' | 'failed')   ARGV[6] webhook event id ('' none)
  ARGV[7] webhook event type
  Returns {"outcome": "released" | "noop" | "duplicate", "status": <purchase status>}
  Errors: NOT_FOUND, PERSISTENCE_LAGGING
  Writes KEYS[2..8]; appends offer.purchase (when released) and offer.webhook (with an
  event id) to KEYS[1].
]]
--- @include "dg_error"
--- @include "dg_now_ms"
--- @include "dg_emit"
--- @include "dg_backlog_full"
--- @include "dg_purchase_units"
--- @include "dg_offer_release"
--- @include "dg_webhook_done"
local full = dg_backlog_full(KEYS[1], ARGV[1], 2)  -- the purchase's event, the webhook's
if full then return dg_error('PERSISTENCE_LAGGING', full) end
local raw = redis.call('HGET', KEYS[5], ARGV[4])
local p = raw and cjson.decode(raw)
if not p or p.offer_id ~= ARGV[3] then
  return dg_error('NOT_FOUND', {purchase_id = ARGV[4]})
end
local event_id = ARGV[6]
if event_id ~= '' and redis.call('EXISTS', KEYS[6]) == 1 then
  return cjson.encode({outcome = 'duplicate', status = p.status})
end
local now = dg_now_ms()
local outcome = 'noop'
if p.status == 'pending' then
  dg_offer_release(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[7], KEYS[8], p, ARGV[5], now)
  outcome = 'released'
end
if event_id ~= '' then
  dg_webhook_done(KEYS[1], KEYS[6], event_id, ARGV[2], ARGV[4], ARGV[7], outcome, now)
end
return cjson.encode({outcome = outcome, status = p.status})
