--[[
  Redeem an invite code for one user: active, not expired (Redis time), user not in
  the used set, max_uses not reached (0 = unlimited); then add the user, bump the
  count and append the event, all in one atomic step.
  KEYS[1] partition log       <prefix>:{pN}:log
  KEYS[2] invite hash         <prefix>:{pN}:t:<tenant>:invite:<code>
  KEYS[3] used-by set         <prefix>:{pN}:t:<tenant>:invite:<code>:users
  ARGV[1] backlog bound   ARGV[2] tenant id   ARGV[3] code   ARGV[4] user id
  Returns {"used_count": n}
  Errors: NOT_FOUND, INACTIVE, EXPIRED, ALREADY_USED, EXHAUSTED, PERSISTENCE_LAGGING
  Writes KEYS[2], KEYS[3]; appends invite.redeemed to KEYS[1].
]]
--- @include "dg_error"
--- @include "dg_now_ms"
--- @include "dg_emit"
--- @include "dg_backlog_full"
local inv = redis.call('HMGET', KEYS[2], 'active', 'expires_at_ms', 'max_uses', 'used_count')
if inv[1] == false then return dg_error('NOT_FOUND', {code = ARGV[3]}) end
if inv[1] ~= '1' then return dg_error('INACTIVE', {code = ARGV[3]}) end
local now = dg_now_ms()
local expires = tonumber(inv[2])
if expires ~= nil and now >= expires then return dg_error('EXPIRED', {code = ARGV[3]}) end
if redis.call('SISMEMBER', KEYS[3], ARGV[4]) == 1 then
  return dg_error('ALREADY_USED', {code = ARGV[3], user_id = ARGV[4]})
end
local max_uses, used = tonumber(inv[3]), tonumber(inv[4])
if max_uses > 0 and used >= max_uses then
  return dg_error('EXHAUSTED', {code = ARGV[3], max_uses = max_uses})
end
local full = dg_backlog_full(KEYS[1], ARGV[1])
if full then return dg_error('PERSISTENCE_LAGGING', full) end
-- validated: now write
redis.call('SADD', KEYS[3], ARGV[4])
used = redis.call('HINCRBY', KEYS[2], 'used_count', 1)
redis.call('HSET', KEYS[2], 'last_used_ms', now)
local version = redis.call('HINCRBY', KEYS[2], 'version', 1)
dg_emit(KEYS[1], 'invite.redeemed', 'invite:' .. ARGV[2] .. ':' .. ARGV[3], version, {
  tenant_id = ARGV[2], code = ARGV[3], user_id = ARGV[4], used_count = used, at_ms = now})
return '{"used_count":' .. used .. '}'
