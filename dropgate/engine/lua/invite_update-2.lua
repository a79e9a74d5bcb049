--[[
  Patch an invite code: active flag, expiry, max_uses. A deactivation is final for
  every redemption ordered after it (scripts run one at a time).
  KEYS[1] partition log       <prefix>:{pN}:log
  KEYS[2] invite hash         <prefix>:{pN}:t:<tenant>:invite:<code>
  ARGV[1] backlog bound   ARGV[2] tenant id   ARGV[3] code
  ARGV[4] active ('' unchanged, '1', '0')
  ARGV[5] expires_at ms ('' unchanged, 'none' clears)
  ARGV[6] max_uses ('' unchanged)
  Returns the invite hash as an object (string values).
  Errors: NOT_FOUND, CONFLICT, PERSISTENCE_LAGGING
  Writes KEYS[2]; appends invite.saved to KEYS[1].
]]
--- @include "dg_error"
--- @include "dg_emit"
--- @include "dg_backlog_full"
--- @include "dg_hash_object"
--- @include "dg_spec_payload"
--- @spec "invite"
local full = dg_backlog_full(KEYS[1], ARGV[1])
if full then return dg_error('PERSISTENCE_LAGGING', full) end
local cur = redis.call('HMGET', KEYS[2], 'used_count')
if cur[1] == false then return dg_error('NOT_FOUND', {code = ARGV[3]}) end
local used = tonumber(cur[1])
if ARGV[6] ~= '' then
  local max_uses = tonumber(ARGV[6])
  if max_uses ~= 0 and max_uses < used then
    return dg_error('CONFLICT', {field = 'max_uses', used_count = used})
  end
end
-- validated: now write
if ARGV[4] ~= '' then redis.call('HSET', KEYS[2], 'active', ARGV[4]) end
if ARGV[5] == 'none' then
  redis.call('HDEL', KEYS[2], 'expires_at_ms')
elseif ARGV[5] ~= '' then
  redis.call('HSET', KEYS[2], 'expires_at_ms', ARGV[5])
end
if ARGV[6] ~= '' then redis.call('HSET', KEYS[2], 'max_uses', ARGV[6]) end
local version = redis.call('HINCRBY', KEYS[2], 'version', 1)
local s = dg_hash_object(KEYS[2])
dg_emit(KEYS[1], 'invite.saved', 'invite:' .. ARGV[2] .. ':' .. ARGV[3], version,
  dg_spec_payload(DG_SPEC, s, {tenant_id = ARGV[2], code = ARGV[3]}))
return cjson.encode(s)
