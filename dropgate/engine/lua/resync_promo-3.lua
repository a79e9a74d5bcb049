--[[
  Re-emit a promo code's Redis state into the log (reconcile --repair), for
  PostgreSQL to catch up: its definition (promo.saved) and one promo.redeemed per
  given use that Redis holds and PostgreSQL lacks (a use row deleted by hand, a lost
  or dead-lettered event), each with its original customer, amounts and time, marked
  "resync" (the applier then inserts it at the code's current version too). Changes
  no state; the appliers are idempotent.
  KEYS[1] partition log       <prefix>:{pN}:log
  KEYS[2] promo hash          <prefix>:{pN}:t:<tenant>:promo:<code>
  KEYS[3] uses hash           <prefix>:{pN}:t:<tenant>:promo:<code>:uses
  ARGV[1] backlog bound   ARGV[2] tenant id   ARGV[3] code
  ARGV[4] '1' to emit the definition too, '0' only the uses
  ARGV[5..] use ids (each must be in KEYS[3])
  Returns {"version": n, "uses": number of promo.redeemed emitted}
  Errors: NOT_FOUND, CONFLICT, PERSISTENCE_LAGGING
  (PERSISTENCE_LAGGING: no room under the bound for every event it would append.)
  Writes nothing; appends promo.saved and promo.redeemed to KEYS[1].
]]
--- @include "dg_error"
--- @include "dg_emit"
--- @include "dg_backlog_full"
--- @include "dg_hash_object"
--- @include "dg_spec_payload"
--- @spec "promo"
-- room for every event appended: the definition (ARGV[4]) and one per member
local full = dg_backlog_full(KEYS[1], ARGV[1], #ARGV - 4 + (ARGV[4] == '1' and 1 or 0))
if full then return dg_error('PERSISTENCE_LAGGING', full) end
local s = redis.call('HMGET', KEYS[2], 'version', 'currency')
if s[1] == false then return dg_error('NOT_FOUND', {code = ARGV[3]}) end
local uses = {}
for i = 5, #ARGV do
  local raw = redis.call('HGET', KEYS[3], ARGV[i])
  if raw == false then return dg_error('CONFLICT', {code = ARGV[3], use_id = ARGV[i]}) end
  uses[#uses + 1] = cjson.decode(raw)
end
local version = tonumber(s[1])
local entity = 'promo:' .. ARGV[2] .. ':' .. ARGV[3]
if ARGV[4] == '1' then
  dg_emit(KEYS[1], 'promo.saved', entity, version, dg_spec_payload(DG_SPEC, dg_hash_object(KEYS[2])))
end
for i = 5, #ARGV do
  local u = uses[i - 4]
  dg_emit(KEYS[1], 'promo.redeemed', entity, version, {
    tenant_id = ARGV[2], code = ARGV[3], use_id = ARGV[i], customer_id = u.customer_id,
    currency = s[2], base_amount = u.base_amount, bonus_amount = u.bonus_amount,
    at_ms = u.at_ms, resync = true})
end
return cjson.encode({version = version, uses = #ARGV - 4})
