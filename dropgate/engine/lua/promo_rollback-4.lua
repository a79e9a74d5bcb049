--[[
  Roll back one use of a promo code: remove the use record and take back exactly
  what it added (times_used - 1, total_bonus_issued - its bonus, the customer's
  count - 1, so the customer's quota is given back), in one atomic step. A use
  that is not there (never existed, or rolled back already) is NOT_FOUND and
  nothing changes. Allowed whatever the code's active flag and window.
  KEYS[1] partition log       <prefix>:{pN}:log
  KEYS[2] promo hash          <prefix>:{pN}:t:<tenant>:promo:<code>
  KEYS[3] uses hash           <prefix>:{pN}:t:<tenant>:promo:<code>:uses
  KEYS[4] customers hash      <prefix>:{pN}:t:<tenant>:promo:<code>:customers
  ARGV[1] backlog bound   ARGV[2] tenant id   ARGV[3] code   ARGV[4] use id
  Returns {"times_used", "total_bonus_issued", "bonus_amount", "customer_id", "currency"}
  Errors: NOT_FOUND, PERSISTENCE_LAGGING
  Writes KEYS[2], KEYS[3], KEYS[4]; appends promo.use_rolled_back to KEYS[1].
]]
--- @include "dg_error"
--- @include "dg_now_ms"
--- @include "dg_emit"
--- @include "dg_backlog_full"
local currency = redis.call('HGET', KEYS[2], 'currency')
if currency == false then return dg_error('NOT_FOUND', {code = ARGV[3]}) end
local raw = redis.call('HGET', KEYS[3], ARGV[4])
if raw == false then return dg_error('NOT_FOUND', {code = ARGV[3], use_id = ARGV[4]}) end
local use = cjson.decode(raw)
local full = dg_backlog_full(KEYS[1], ARGV[1])
if full then return dg_error('PERSISTENCE_LAGGING', full) end
-- validated: now write
local bonus_s = string.format('%d', use.bonus_amount)
redis.call('HDEL', KEYS[3], ARGV[4])
if redis.call('HINCRBY', KEYS[4], use.customer_id, -1) <= 0 then
  redis.call('HDEL', KEYS[4], use.customer_id)
end
local used = redis.call('HINCRBY', KEYS[2], 'times_used', -1)
local total = redis.call('HINCRBY', KEYS[2], 'total_bonus_issued',
  string.format('%d', -use.bonus_amount))
local version = redis.call('HINCRBY', KEYS[2], 'version', 1)
dg_emit(KEYS[1], 'promo.use_rolled_back', 'promo:' .. ARGV[2] .. ':' .. ARGV[3], version, {
  tenant_id = ARGV[2], code = ARGV[3], use_id = ARGV[4], customer_id = use.customer_id,
  bonus_amount = use.bonus_amount, at_ms = dg_now_ms()})
return '{"times_used":' .. string.format('%d', used) .. ',"total_bonus_issued":'
  .. string.format('%d', total) .. ',"bonus_amount":' .. bonus_s .. ',"customer_id":'
  .. cjson.encode(use.customer_id) .. ',"currency":' .. cjson.encode(currency) .. '}'
