--[[
  Apply one refund the provider made: from the refund route (after the provider
  accepted it; its hold from offer_refund_hold is given back in the same step) or
  from a charge.refunded webhook (a refund made in the provider's dashboard).
  A refund id is applied once (the record keeps `refunds`: id -> amount), never for
  more than is left of the payment. When the refunds reach the amount paid the
  purchase is `refunded` and, with restock, its units return to available (sold -=
  quantity); before that it is `partially_refunded` (a disputed purchase stays
  `disputed`). Units of a refunded purchase without restock stay sold.
  A webhook's event id is recorded (7 days): a repeated delivery changes nothing.
  KEYS[1] partition log       <prefix>:{pN}:log
  KEYS[2] purchases hash      <prefix>:{pN}:t:<tenant>:purchases
  KEYS[3] offer hash          <prefix>:{pN}:t:<tenant>:offer:<offer>
  KEYS[4] webhook event mark  <prefix>:{pN}:t:<tenant>:whevt:<event> (unused without one)
  KEYS[5] offer users hash    <prefix>:{pN}:t:<tenant>:offer:<offer>:users
  ARGV[1] backlog bound   ARGV[2] tenant id   ARGV[3] offer id   ARGV[4] purchase id
  ARGV[5] refund id   ARGV[6] amount in minor units   ARGV[7] restock '1' | '0'
  ARGV[8] refund hold id ('' none)   ARGV[9] webhook event id ('' none)
  ARGV[10] webhook event type
  Returns {"outcome": "refunded" | "partially_refunded" | "duplicate" | "noop",
           "status": s, "refunded_minor": n}
  Errors: NOT_FOUND, PERSISTENCE_LAGGING
  Writes KEYS[2..5]; appends offer.purchase (on a change) and offer.webhook (with an
  event id) to KEYS[1].
]]
--- @include "dg_error"
--- @include "dg_now_ms"
--- @include "dg_emit"
--- @include "dg_backlog_full"
--- @include "dg_purchase_units"
--- @include "dg_offer_purchase"
--- @include "dg_purchase_save"
--- @include "dg_webhook_done"
local full = dg_backlog_full(KEYS[1], ARGV[1], 2)  -- the purchase's event, the webhook's
if full then return dg_error('PERSISTENCE_LAGGING', full) end
local p, missing = dg_offer_purchase(KEYS[2], KEYS[3], ARGV[3], ARGV[4])
if missing then return missing end
local event_id = ARGV[9]
local function answer(outcome)
  return cjson.encode({outcome = outcome, status = p.status, refunded_minor = p.refunded_minor or 0})
end
if event_id ~= '' and redis.call('EXISTS', KEYS[4]) == 1 then return answer('duplicate') end
local now = dg_now_ms()
local dirty = false
if ARGV[8] ~= '' and type(p.refund_holds) == 'table' and p.refund_holds[ARGV[8]] then
  p.refund_holds[ARGV[8]] = nil
  dirty = true
end
if type(p.refunds) ~= 'table' then p.refunds = {} end
local refunded = p.refunded_minor or 0
local amount = math.min(tonumber(ARGV[6]), p.amount_minor - refunded)
local outcome
if p.refunds[ARGV[5]] then
  outcome = 'duplicate'
elseif (p.status ~= 'paid' and p.status ~= 'partially_refunded' and p.status ~= 'disputed')
    or amount < 1 then
  outcome = 'noop'  -- nothing of it left to give back here (a late payment's own refund)
else
  p.refunds[ARGV[5]] = amount
  p.refunded_minor = refunded + amount
  p.refund_id = ARGV[5]
  if p.refunded_minor >= p.amount_minor then
    p.status = 'refunded'
    p.refund = 'done'
    if ARGV[7] == '1' then dg_purchase_units(KEYS[3], KEYS[5], p, 'none') end
  elseif p.status ~= 'disputed' then
    p.status = 'partially_refunded'
  end
  outcome = p.status == 'refunded' and 'refunded' or 'partially_refunded'
  dg_purchase_save(KEYS[1], KEYS[2], KEYS[3], ARGV[2], ARGV[4], p, now)
  dirty = false
end
if dirty then redis.call('HSET', KEYS[2], ARGV[4], cjson.encode(p)) end
if event_id ~= '' then
  dg_webhook_done(KEYS[1], KEYS[4], event_id, ARGV[2], ARGV[4], ARGV[10], outcome, now)
end
return answer(outcome)
