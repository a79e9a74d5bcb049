--[[
  Set aside (or give back) the amount of one refund before the provider is asked
  for it, so concurrent refunds of one purchase can never together pass what was
  paid: remaining = amount paid - refunded - amounts set aside by refunds under way.
  The hold lives in the purchase record (`refund_holds`, id -> {amount, at ms});
  it changes no status and appends no event. A hold older than ARGV[8] ms (its
  request stopped answering) no longer counts; a refund it made at the provider
  still arrives, once, by its charge.refunded webhook.
  KEYS[1] partition log       <prefix>:{pN}:log
  KEYS[2] purchases hash      <prefix>:{pN}:t:<tenant>:purchases
  KEYS[3] offer hash          <prefix>:{pN}:t:<tenant>:offer:<offer>
  ARGV[1] backlog bound   ARGV[2] tenant id   ARGV[3] offer id   ARGV[4] purchase id
  ARGV[5] hold id   ARGV[6] amount in minor units ('' = all that is left)
  ARGV[7] 'take' | 'drop'   ARGV[8] ms after which a hold counts as abandoned
  Returns {"amount": n, "payment_intent": s, "currency": s, "status": s}
    (take: the amount set aside, the same again for a hold id already taken;
     drop: the amount given back, 0 when there was none)
  Errors: NOT_FOUND, PURCHASE_NOT_PAID, REFUND_EXCEEDS_PAYMENT, PERSISTENCE_LAGGING
  Writes KEYS[2].
]]
--- @include "dg_error"
--- @include "dg_now_ms"
--- @include "dg_backlog_full"
--- @include "dg_offer_purchase"
local p, missing = dg_offer_purchase(KEYS[2], KEYS[3], ARGV[3], ARGV[4])
if missing then return missing end
local now = dg_now_ms()
local holds = p.refund_holds
if type(holds) ~= 'table' then holds = {} end
local function answer(amount)
  return cjson.encode({amount = amount, payment_intent = p.payment_intent or '',
    currency = p.currency, status = p.status})
end
if ARGV[7] == 'drop' then
  local h = holds[ARGV[5]]
  if not h then return answer(0) end
  holds[ARGV[5]] = nil
  p.refund_holds = holds
  redis.call('HSET', KEYS[2], ARGV[4], cjson.encode(p))
  return answer(h[1])
end
local full = dg_backlog_full(KEYS[1], ARGV[1])
if full then return dg_error('PERSISTENCE_LAGGING', full) end
if holds[ARGV[5]] then return answer(holds[ARGV[5]][1]) end
if (p.status ~= 'paid' and p.status ~= 'partially_refunded') or not p.payment_intent then
  return dg_error('PURCHASE_NOT_PAID', {purchase_id = ARGV[4], status = p.status})
end
local set_aside = 0
for id, h in pairs(holds) do
  if now - h[2] > tonumber(ARGV[8]) then holds[id] = nil else set_aside = set_aside + h[1] end
end
local refundable = p.amount_minor - (p.refunded_minor or 0) - set_aside
local amount = tonumber(ARGV[6]) or refundable
if amount < 1 or amount > refundable then
  return dg_error('REFUND_EXCEEDS_PAYMENT', {purchase_id = ARGV[4], requested_minor = amount,
    refundable_minor = refundable})
end
holds[ARGV[5]] = {amount, now}
p.refund_holds = holds
redis.call('HSET', KEYS[2], ARGV[4], cjson.encode(p))
return answer(amount)
