--[[
  Create an offer from its fields (dropgate/specs: OFFER), given as name/value pairs.
  KEYS[1] partition log       <prefix>:{pN}:log
  KEYS[2] offer hash          <prefix>:{pN}:t:<tenant>:offer:<offer>
  KEYS[3] event's offer set   <prefix>:{pN}:t:<tenant>:event:<event>:offers
  ARGV[1] backlog bound   ARGV[2] tenant id   ARGV[3] offer id
  ARGV[4..] field name, value (Redis form; '' leaves a nullable field absent): every saved
  field of the spec but tenant_id, offer_id, archived and created_ms, which this sets
  (an unknown, repeated, missing or non-numeric field is VALIDATION_ERROR: a caller's bug)
  Returns the offer hash as an object (string values).
  Errors: ALREADY_EXISTS, PERSISTENCE_LAGGING, VALIDATION_ERROR
  Writes KEYS[2], KEYS[3]; appends offer.saved to KEYS[1].
]]
--- @include "dg_error"
--- @include "dg_now_ms"
--- @include "dg_emit"
--- @include "dg_backlog_full"
--- @include "dg_hash_object"
--- @include "dg_spec_pairs"
--- @include "dg_spec_payload"
--- @spec "offer"
local full = dg_backlog_full(KEYS[1], ARGV[1])
if full then return dg_error('PERSISTENCE_LAGGING', full) end
local given, bad = dg_spec_pairs(DG_SPEC, 4, {tenant_id = true, offer_id = true, archived = true,
  created_ms = true})
if given == nil then return dg_error('VALIDATION_ERROR', {field = bad}) end
if redis.call('EXISTS', KEYS[2]) == 1 then
  return dg_error('ALREADY_EXISTS', {offer_id = ARGV[3]})
end
local now = dg_now_ms()
redis.call('HSET', KEYS[2], 'tenant_id', ARGV[2], 'offer_id', ARGV[3], 'reserved', 0, 'sold', 0,
  'archived', '0', 'created_ms', now, 'version', 1, unpack(given))
local o = dg_hash_object(KEYS[2])
redis.call('SADD', KEYS[3], ARGV[3])
dg_emit(KEYS[1], 'offer.saved', 'offer:' .. ARGV[2] .. ':' .. ARGV[3], 1, dg_spec_payload(DG_SPEC, o))
return cjson.encode(o)
