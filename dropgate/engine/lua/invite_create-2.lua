--[[
  Create an invite code.
  KEYS[1] partition log       <prefix>:{pN}:log
  KEYS[2] invite hash         <prefix>:{pN}:t:<tenant>:invite:<code>
  ARGV[1] backlog bound   ARGV[2] tenant id   ARGV[3] code   ARGV[4] max_uses (0 = unlimited)
  ARGV[5] expires_at ms ('' none)   ARGV[6] active ('1' | '0')
  Returns the invite hash as an object (string values).
  Errors: ALREADY_EXISTS, PERSISTENCE_LAGGING
  Writes KEYS[2]; appends invite.saved to KEYS[1].
]]
--- @include "dg_error"
--- @include "dg_now_ms"
--- @include "dg_emit"
--- @include "dg_backlog_full"
--- @include "dg_hash_object"
--- @include "dg_spec_payload"
--- @spec "invite"
local full = dg_backlog_full(KEYS[1], ARGV[1])
if full then return dg_error('PERSISTENCE_LAGGING', full) end
if redis.call('EXISTS', KEYS[2]) == 1 then
  return dg_error('ALREADY_EXISTS', {code = ARGV[3]})
end
local now = dg_now_ms()
redis.call('HSET', KEYS[2], 'tenant_id', ARGV[2], 'code', ARGV[3], 'max_uses', ARGV[4],
  'used_count', 0, 'active', ARGV[6], 'created_ms', now, 'version', 1)
if ARGV[5] ~= '' then redis.call('HSET', KEYS[2], 'expires_at_ms', ARGV[5]) end
local s = dg_hash_object(KEYS[2])
dg_emit(KEYS[1], 'invite.saved', 'invite:' .. ARGV[2] .. ':' .. ARGV[3], 1, dg_spec_payload(DG_SPEC, s))
return cjson.encode(s)
