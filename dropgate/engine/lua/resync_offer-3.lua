--[[
  Re-emit an offer's Redis state into the log (reconcile --repair), for PostgreSQL to
  catch up: its definition (offer.saved) and one offer.purchase per given purchase,
  each record exactly as Redis holds it at its version (a row deleted by hand, a lost
  or dead-lettered event). Changes no state; the appliers are idempotent.
  KEYS[1] partition log       <prefix>:{pN}:log
  KEYS[2] offer hash          <prefix>:{pN}:t:<tenant>:offer:<offer>
  KEYS[3] purchases hash      <prefix>:{pN}:t:<tenant>:purchases
  ARGV[1] backlog bound   ARGV[2] tenant id   ARGV[3] offer id
  ARGV[4] '1' to emit the definition too, '0' only the purchases
  ARGV[5..] purchase ids (each in KEYS[3], of this offer)
  Returns {"version": n, "purchases": number of offer.purchase emitted}
  Errors: NOT_FOUND, CONFLICT, PERSISTENCE_LAGGING
  (PERSISTENCE_LAGGING: no room under the bound for every event it would append.)
  Writes nothing; appends offer.saved and offer.purchase to KEYS[1].
]]
--- @include "dg_error"
--- @include "dg_emit"
--- @include "dg_backlog_full"
--- @include "dg_hash_object"
--- @include "dg_spec_payload"
--- @spec "offer"
-- room for every event appended: the definition (ARGV[4]) and one per member
local full = dg_backlog_full(KEYS[1], ARGV[1], #ARGV - 4 + (ARGV[4] == '1' and 1 or 0))
if full then return dg_error('PERSISTENCE_LAGGING', full) end
local o = dg_hash_object(KEYS[2])
if o == nil or o.version == nil then return dg_error('NOT_FOUND', {offer_id = ARGV[3]}) end
local purchases = {}
for i = 5, #ARGV do
  local raw = redis.call('HGET', KEYS[3], ARGV[i])
  if raw == false then return dg_error('CONFLICT', {purchase_id = ARGV[i]}) end
  local p = cjson.decode(raw)
  if p.offer_id ~= ARGV[3] then return dg_error('CONFLICT', {purchase_id = ARGV[i]}) end
  purchases[#purchases + 1] = p
end
local version = tonumber(o.version)
if ARGV[4] == '1' then
  dg_emit(KEYS[1], 'offer.saved', 'offer:' .. ARGV[2] .. ':' .. ARGV[3], version,
    dg_spec_payload(DG_SPEC, o, {tenant_id = ARGV[2], offer_id = ARGV[3]}))
end
for _, p in ipairs(purchases) do
  p.offer_version = version
  dg_emit(KEYS[1], 'offer.purchase', 'purchase:' .. ARGV[2] .. ':' .. p.purchase_id, p.version, p)
end
return cjson.encode({version = version, purchases = #purchases})
