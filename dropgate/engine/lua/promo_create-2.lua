--[[
  Create a promo code: a fixed bonus (minor units) or a percent bonus (hundredths of a
  basis point) in one currency, with optional total and per-customer limits and window.
  KEYS[1] partition log       <prefix>:{pN}:log
  KEYS[2] promo hash          <prefix>:{pN}:t:<tenant>:promo:<code>
  ARGV[1] backlog bound   ARGV[2] tenant id   ARGV[3] code   ARGV[4] kind ('fixed' | 'percent')
  ARGV[5] bonus value (fixed: amount in minor units; percent: units of 1/10000 %)
  ARGV[6] currency   ARGV[7] max_uses ('' unlimited)   ARGV[8] per_customer_limit
  ARGV[9] starts_at ms ('' none)   ARGV[10] ends_at ms ('' none)   ARGV[11] active ('1' | '0')
  Returns the promo hash as an object (string values).
  Errors: ALREADY_EXISTS, VALIDATION_ERROR, PERSISTENCE_LAGGING
  Writes KEYS[2]; appends promo.saved to KEYS[1].
]]
--- @include "dg_error"
--- @include "dg_now_ms"
--- @include "dg_emit"
--- @include "dg_backlog_full"
--- @include "dg_hash_object"
--- @include "dg_spec_payload"
--- @spec "promo"
local full = dg_backlog_full(KEYS[1], ARGV[1])
if full then return dg_error('PERSISTENCE_LAGGING', full) end
if redis.call('EXISTS', KEYS[2]) == 1 then
  return dg_error('ALREADY_EXISTS', {code = ARGV[3]})
end
local kind, value = ARGV[4], tonumber(ARGV[5])
if (kind ~= 'fixed' and kind ~= 'percent') or value == nil or value < 1
    or (kind == 'percent' and value > 1000000) or value > 10000000000000 then
  return dg_error('VALIDATION_ERROR', {field = 'bonus'})
end
local starts, ends = tonumber(ARGV[9]), tonumber(ARGV[10])
if starts ~= nil and ends ~= nil and ends <= starts then
  return dg_error('VALIDATION_ERROR', {field = 'ends_at', reason = 'ends_at must be after starts_at'})
end
-- validated: now write
local now = dg_now_ms()
redis.call('HSET', KEYS[2], 'tenant_id', ARGV[2], 'code', ARGV[3], 'kind', kind,
  kind == 'fixed' and 'amount' or 'percent', ARGV[5], 'currency', ARGV[6],
  'per_customer_limit', ARGV[8], 'active', ARGV[11], 'times_used', 0, 'total_bonus_issued', 0,
  'created_ms', now, 'version', 1)
if ARGV[7] ~= '' then redis.call('HSET', KEYS[2], 'max_uses', ARGV[7]) end
if ARGV[9] ~= '' then redis.call('HSET', KEYS[2], 'starts_at_ms', ARGV[9]) end
if ARGV[10] ~= '' then redis.call('HSET', KEYS[2], 'ends_at_ms', ARGV[10]) end
dg_emit(KEYS[1], 'promo.saved', 'promo:' .. ARGV[2] .. ':' .. ARGV[3], 1,
  dg_spec_payload(DG_SPEC, dg_hash_object(KEYS[2])))
return cjson.encode(dg_hash_object(KEYS[2]))
