--[[
  Redeem a promo code for one customer on a purchase of `base` minor units. Checks
  the active flag, the window (Redis time), the customer's limit and max_uses; then
  computes the bonus in exact integers (fixed: the amount; percent: rounded half up),
  and writes the use record, the customer's count, times_used, total_bonus_issued and
  the event in one atomic step: the counters always equal the sum over the use records.
  KEYS[1] partition log       <prefix>:{pN}:log
  KEYS[2] promo hash          <prefix>:{pN}:t:<tenant>:promo:<code>
  KEYS[3] uses hash           <prefix>:{pN}:t:<tenant>:promo:<code>:uses
  KEYS[4] customers hash      <prefix>:{pN}:t:<tenant>:promo:<code>:customers
  ARGV[1] backlog bound   ARGV[2] tenant id   ARGV[3] code   ARGV[4] customer id
  ARGV[5] base amount (minor units, 1..10^13)   ARGV[6] currency the base was parsed in
  ARGV[7] use id (fresh, from the caller)
  Returns {"use_id", "bonus_amount", "total_amount", "times_used", "total_bonus_issued"}
    (amounts as integers of minor units)
  Errors: NOT_FOUND, VALIDATION_ERROR, INACTIVE, NOT_STARTED, EXPIRED, CUSTOMER_LIMIT, EXHAUSTED, CONFLICT, PERSISTENCE_LAGGING
  Writes KEYS[2], KEYS[3], KEYS[4]; appends promo.redeemed to KEYS[1].
]]
--- @include "dg_error"
--- @include "dg_now_ms"
--- @include "dg_emit"
--- @include "dg_backlog_full"
--- @include "dg_percent_of"
local p = redis.call('HMGET', KEYS[2], 'active', 'currency', 'kind', 'amount', 'percent',
  'starts_at_ms', 'ends_at_ms', 'max_uses', 'per_customer_limit', 'times_used',
  'total_bonus_issued')
if p[1] == false then return dg_error('NOT_FOUND', {code = ARGV[3]}) end
if p[2] ~= ARGV[6] then
  return dg_error('VALIDATION_ERROR', {field = 'base_amount', currency = p[2]})
end
local base = tonumber(ARGV[5])
if base == nil or base < 1 or base > 10000000000000 or base ~= math.floor(base) then
  return dg_error('VALIDATION_ERROR', {field = 'base_amount'})
end
if p[1] ~= '1' then return dg_error('INACTIVE', {code = ARGV[3]}) end
local now = dg_now_ms()
local starts, ends = tonumber(p[6]), tonumber(p[7])
if starts ~= nil and now < starts then
  return dg_error('NOT_STARTED', {code = ARGV[3], starts_at_ms = starts})
end
if ends ~= nil and now >= ends then
  return dg_error('EXPIRED', {code = ARGV[3], ends_at_ms = ends})
end
local limit = tonumber(p[9])
local mine = tonumber(redis.call('HGET', KEYS[4], ARGV[4]) or '0')
if mine >= limit then
  return dg_error('CUSTOMER_LIMIT', {code = ARGV[3], customer_id = ARGV[4], per_customer_limit = limit})
end
local max_uses, used = tonumber(p[8]), tonumber(p[10])
if max_uses ~= nil and used >= max_uses then
  return dg_error('EXHAUSTED', {code = ARGV[3], max_uses = max_uses})
end
if redis.call('HEXISTS', KEYS[3], ARGV[7]) == 1 then
  return dg_error('CONFLICT', {use_id = ARGV[7], reason = 'use id taken'})
end
local bonus
if p[3] == 'fixed' then
  bonus = tonumber(p[4])
else
  bonus = dg_percent_of(base, tonumber(p[5]))
end
-- keep the running total exact in a double (and in every reader's int64)
if tonumber(p[11]) + bonus > 9007199254740991 then
  return dg_error('CONFLICT', {code = ARGV[3], reason = 'total_bonus_issued out of range'})
end
local full = dg_backlog_full(KEYS[1], ARGV[1])
if full then return dg_error('PERSISTENCE_LAGGING', full) end
-- validated: now write
local bonus_s, base_s = string.format('%d', bonus), string.format('%d', base)
redis.call('HSET', KEYS[3], ARGV[7], '{"customer_id":' .. cjson.encode(ARGV[4])
  .. ',"base_amount":' .. base_s .. ',"bonus_amount":' .. bonus_s
  .. ',"at_ms":' .. string.format('%d', now) .. '}')
redis.call('HINCRBY', KEYS[4], ARGV[4], 1)
used = redis.call('HINCRBY', KEYS[2], 'times_used', 1)
local total = redis.call('HINCRBY', KEYS[2], 'total_bonus_issued', bonus_s)
local version = redis.call('HINCRBY', KEYS[2], 'version', 1)
dg_emit(KEYS[1], 'promo.redeemed', 'promo:' .. ARGV[2] .. ':' .. ARGV[3], version, {
  tenant_id = ARGV[2], code = ARGV[3], use_id = ARGV[7], customer_id = ARGV[4],
  currency = p[2], base_amount = base, bonus_amount = bonus, at_ms = now})
return '{"use_id":' .. cjson.encode(ARGV[7]) .. ',"bonus_amount":' .. bonus_s
  .. ',"total_amount":' .. string.format('%d', base + bonus) .. ',"times_used":'
  .. string.format('%d', used) .. ',"total_bonus_issued":' .. string.format('%d', total) .. '}'
