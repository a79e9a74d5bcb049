--[[
  Patch a promo code: active flag, window, max_uses, per_customer_limit. Scripts run
  one at a time, so a deactivation is final for every redemption ordered after it,
  and no redemption ordered before it is undone.
  KEYS[1] partition log       <prefix>:{pN}:log
  KEYS[2] promo hash          <prefix>:{pN}:t:<tenant>:promo:<code>
  ARGV[1] backlog bound   ARGV[2] tenant id   ARGV[3] code
  ARGV[4] active ('' unchanged, '1', '0')
  ARGV[5] starts_at ms ('' unchanged, 'none' clears)
  ARGV[6] ends_at ms ('' unchanged, 'none' clears)
  ARGV[7] max_uses ('' unchanged, 'none' = unlimited)
  ARGV[8] per_customer_limit ('' unchanged)
  Returns the promo hash as an object (string values).
  Errors: NOT_FOUND, CONFLICT, VALIDATION_ERROR, PERSISTENCE_LAGGING
  Writes KEYS[2]; appends promo.saved to KEYS[1].
]]
--- @include "dg_error"
--- @include "dg_emit"
--- @include "dg_backlog_full"
--- @include "dg_hash_object"
--- @include "dg_spec_payload"
--- @spec "promo"
local full = dg_backlog_full(KEYS[1], ARGV[1])
if full then return dg_error('PERSISTENCE_LAGGING', full) end
local cur = redis.call('HMGET', KEYS[2], 'times_used', 'starts_at_ms', 'ends_at_ms')
if cur[1] == false then return dg_error('NOT_FOUND', {code = ARGV[3]}) end
local used = tonumber(cur[1])
if ARGV[7] ~= '' and ARGV[7] ~= 'none' and tonumber(ARGV[7]) < used then
  return dg_error('CONFLICT', {field = 'max_uses', times_used = used})
end
local function pick(arg, current)
  if arg == '' then return tonumber(current) end
  return tonumber(arg) -- 'none' -> nil
end
local starts, ends = pick(ARGV[5], cur[2]), pick(ARGV[6], cur[3])
if starts ~= nil and ends ~= nil and ends <= starts then
  return dg_error('VALIDATION_ERROR', {field = 'ends_at', reason = 'ends_at must be after starts_at'})
end
-- validated: now write
local function put(field, arg)
  if arg == 'none' then
    redis.call('HDEL', KEYS[2], field)
  elseif arg ~= '' then
    redis.call('HSET', KEYS[2], field, arg)
  end
end
put('active', ARGV[4])
put('starts_at_ms', ARGV[5])
put('ends_at_ms', ARGV[6])
put('max_uses', ARGV[7])
put('per_customer_limit', ARGV[8])
local version = redis.call('HINCRBY', KEYS[2], 'version', 1)
dg_emit(KEYS[1], 'promo.saved', 'promo:' .. ARGV[2] .. ':' .. ARGV[3], version,
  dg_spec_payload(DG_SPEC, dg_hash_object(KEYS[2])))
return cjson.encode(dg_hash_object(KEYS[2]))
