--[[
  Create an offer: inventory_total units at a price, sold at most max_per_order at a time.
  KEYS[1] partition log       <prefix>:{pN}:log
  KEYS[2] offer hash          <prefix>:{pN}:t:<tenant>:offer:<offer>
  KEYS[3] event's offer set   <prefix>:{pN}:t:<tenant>:event:<event>:offers
  ARGV[1] backlog bound   ARGV[2] tenant id   ARGV[3] offer id   ARGV[4] event id
  ARGV[5] name   ARGV[6] price (minor units)   ARGV[7] currency   ARGV[8] inventory total
  ARGV[9] max per order   ARGV[10] expires_at ms ('' none)   ARGV[11] active ('1' | '0')
  Returns the offer hash as an object (string values).
  Errors: ALREADY_EXISTS, PERSISTENCE_LAGGING
  Writes KEYS[2], KEYS[3]; appends offer.saved to KEYS[1].
]]
--- @include "dg_error"
--- @include "dg_now_ms"
--- @include "dg_emit"
--- @include "dg_backlog_full"
--- @include "dg_hash_object"
local full = dg_backlog_full(KEYS[1], ARGV[1])
if full then return dg_error('PERSISTENCE_LAGGING', full) end
if redis.call('EXISTS', KEYS[2]) == 1 then
  return dg_error('ALREADY_EXISTS', {offer_id = ARGV[3]})
end
local now = dg_now_ms()
redis.call('HSET', KEYS[2], 'tenant_id', ARGV[2], 'offer_id', ARGV[3], 'event_id', ARGV[4],
  'name', ARGV[5], 'price_minor', ARGV[6], 'currency', ARGV[7], 'total', ARGV[8],
  'reserved', 0, 'sold', 0, 'max_per_order', ARGV[9], 'active', ARGV[11], 'archived', '0',
  'created_ms', now, 'version', 1)
if ARGV[10] ~= '' then redis.call('HSET', KEYS[2], 'expires_at_ms', ARGV[10]) end
redis.call('SADD', KEYS[3], ARGV[3])
dg_emit(KEYS[1], 'offer.saved', 'offer:' .. ARGV[2] .. ':' .. ARGV[3], 1, {
  tenant_id = ARGV[2], offer_id = ARGV[3], event_id = ARGV[4], name = ARGV[5],
  price_minor = tonumber(ARGV[6]), currency = ARGV[7], total = tonumber(ARGV[8]),
  max_per_order = tonumber(ARGV[9]), active = ARGV[11] == '1', archived = false,
  expires_at_ms = tonumber(ARGV[10]) or cjson.null, created_ms = now})
return cjson.encode(dg_hash_object(KEYS[2]))
