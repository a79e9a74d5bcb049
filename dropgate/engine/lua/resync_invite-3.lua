--[[
  Re-emit an invite code's Redis state into the log (reconcile --repair), for
  PostgreSQL to catch up: its definition (invite.saved) and one invite.redeemed per
  given user that Redis holds and PostgreSQL lacks (a use row deleted by hand, a lost
  or dead-lettered event). Changes no state; the appliers are idempotent.
  KEYS[1] partition log       <prefix>:{pN}:log
  KEYS[2] invite hash         <prefix>:{pN}:t:<tenant>:invite:<code>
  KEYS[3] used-by set         <prefix>:{pN}:t:<tenant>:invite:<code>:users
  ARGV[1] backlog bound   ARGV[2] tenant id   ARGV[3] code
  ARGV[4] '1' to emit the definition too, '0' only the uses
  ARGV[5..] user ids (each must be in KEYS[3])
  Returns {"version": n, "uses": number of invite.redeemed emitted}
  Errors: NOT_FOUND, CONFLICT, PERSISTENCE_LAGGING
  (PERSISTENCE_LAGGING: no room under the bound for every event it would append.)
  Writes nothing; appends invite.saved and invite.redeemed to KEYS[1].
]]
--- @include "dg_error"
--- @include "dg_now_ms"
--- @include "dg_emit"
--- @include "dg_backlog_full"
--- @include "dg_hash_object"
--- @include "dg_spec_payload"
--- @spec "invite"
-- room for every event appended: the definition (ARGV[4]) and one per member
local full = dg_backlog_full(KEYS[1], ARGV[1], #ARGV - 4 + (ARGV[4] == '1' and 1 or 0))
if full then return dg_error('PERSISTENCE_LAGGING', full) end
local s = dg_hash_object(KEYS[2])
if s == nil or s.version == nil then return dg_error('NOT_FOUND', {code = ARGV[3]}) end
for i = 5, #ARGV do
  if redis.call('SISMEMBER', KEYS[3], ARGV[i]) == 0 then
    return dg_error('CONFLICT', {code = ARGV[3], user_id = ARGV[i]})
  end
end
local version = tonumber(s.version)
local entity = 'invite:' .. ARGV[2] .. ':' .. ARGV[3]
if ARGV[4] == '1' then
  dg_emit(KEYS[1], 'invite.saved', entity, version,
    dg_spec_payload(DG_SPEC, s, {tenant_id = ARGV[2], code = ARGV[3]}))
end
local now = dg_now_ms()
for i = 5, #ARGV do
  dg_emit(KEYS[1], 'invite.redeemed', entity, version, {
    tenant_id = ARGV[2], code = ARGV[3], user_id = ARGV[i], used_count = tonumber(s.used_count), at_ms = now})
end
return cjson.encode({version = version, uses = #ARGV - 4})
