--[[
  checkout.session.completed: the payment went through.
    pending             -> paid: reserved -= quantity, sold += quantity (exactly the hold)
    expired / released  -> the units are taken again if still available (paid,
                           retaken), else the purchase becomes refunded (refund
                           pending: the caller refunds through the provider and then
                           calls offer_refund_done)
    canceled / failed   -> refunded (refund pending), never taken again: the buyer
                           or the seller gave the purchase up
    paid                -> no-op;  refunded with the refund still pending -> "refund" again
  The event id is recorded (7 days): a repeated delivery is a no-op (it only answers
  "refund" again while that refund is pending, so a failed refund is retried).
  KEYS[1] partition log       <prefix>:{pN}:log
  KEYS[2] offer hash          <prefix>:{pN}:t:<tenant>:offer:<offer>
  KEYS[3] offer holds zset    <prefix>:{pN}:t:<tenant>:offer:<offer>:holds
  KEYS[4] hold expiry zset    <prefix>:{pN}:offer_holds
  KEYS[5] purchases hash      <prefix>:{pN}:t:<tenant>:purchases
  KEYS[6] webhook event mark  <prefix>:{pN}:t:<tenant>:whevt:<event>
  KEYS[7] offer users hash    <prefix>:{pN}:t:<tenant>:offer:<offer>:users
  KEYS[8] purchase sessions   <prefix>:{pN}:t:<tenant>:purchase_sessions (lib/dg_purchase_session.lua)
  ARGV[1] backlog bound   ARGV[2] tenant id   ARGV[3] offer id   ARGV[4] purchase id
  ARGV[5] webhook event id   ARGV[6] checkout session id   ARGV[7] payment intent id
  Returns {"outcome": "confirmed" | "retaken" | "refund" | "noop" | "duplicate",
           "status": s, "quantity": n, "payment_intent": s}
  Errors: NOT_FOUND, PERSISTENCE_LAGGING
  Writes KEYS[2..8]; appends offer.purchase (on a change) and offer.webhook to KEYS[1].
]]
--- @include "dg_error"
--- @include "dg_now_ms"
--- @include "dg_emit"
--- @include "dg_backlog_full"
--- @include "dg_purchase_units"
--- @include "dg_offer_release"
--- @include "dg_offer_expire_holds"
--- @include "dg_offer_purchase"
--- @include "dg_purchase_save"
--- @include "dg_purchase_unhold"
--- @include "dg_webhook_done"
local full = dg_backlog_full(KEYS[1], ARGV[1], 2)  -- the purchase's event, the webhook's
if full then return dg_error('PERSISTENCE_LAGGING', full) end
local p, missing = dg_offer_purchase(KEYS[5], KEYS[2], ARGV[3], ARGV[4])
if missing then return missing end
local function answer(outcome)
  return cjson.encode({outcome = outcome, status = p.status, quantity = p.quantity,
    payment_intent = p.payment_intent or ARGV[7]})
end
local refund_pending = p.status == 'refunded' and p.refund == 'pending'
if redis.call('EXISTS', KEYS[6]) == 1 then
  if refund_pending then return answer('refund') end
  return answer('duplicate')
end
local now = dg_now_ms()
local outcome = 'noop'
local function settle(status)
  p.status = status
  if ARGV[6] ~= '' then p.session_id = ARGV[6] end
  if ARGV[7] ~= '' then p.payment_intent = ARGV[7] end
  dg_purchase_save(KEYS[1], KEYS[5], KEYS[2], ARGV[2], ARGV[4], p, now)
end
if p.status == 'pending' then
  dg_purchase_units(KEYS[2], KEYS[7], p, 'sold')
  dg_purchase_unhold(KEYS[3], KEYS[4], KEYS[8], p)
  settle('paid')
  outcome = 'confirmed'
elseif p.status == 'expired' or p.status == 'released' then
  dg_offer_expire_holds(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[7], KEYS[8], now, 1000,
    tonumber(ARGV[1]) - 2)  -- room kept for this script's own two events
  local o = redis.call('HMGET', KEYS[2], 'total', 'reserved', 'sold')
  if tonumber(o[1]) - tonumber(o[2]) - tonumber(o[3]) >= p.quantity then
    dg_purchase_units(KEYS[2], KEYS[7], p, 'sold')
    p.retaken = true
    settle('paid')
    outcome = 'retaken'
  else
    p.refund = 'pending'
    settle('refunded')
    outcome = 'refund'
  end
elseif p.status == 'canceled' or p.status == 'failed' then
  p.refund = 'pending'
  settle('refunded')
  outcome = 'refund'
elseif refund_pending then
  outcome = 'refund'
end
dg_webhook_done(KEYS[1], KEYS[6], ARGV[5], ARGV[2], ARGV[4], 'checkout.session.completed',
  outcome, now)
return answer(outcome)
