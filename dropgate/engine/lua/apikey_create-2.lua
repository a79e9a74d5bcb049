--[[
  Store an API key: only the SHA-256 of its secret is kept, never the secret.
  KEYS[1] partition log       <prefix>:{pN}:log
  KEYS[2] api key hash        <prefix>:{pN}:apikey:<key_id>
  ARGV[1] backlog bound   ARGV[2] key id   ARGV[3] secret sha256 hex
  ARGV[4] role ('admin' | 'service')   ARGV[5] tenant id ('' for admin)
  Returns {key_id, role, tenant_id, created_ms}
  Errors: ALREADY_EXISTS, PERSISTENCE_LAGGING
  Writes KEYS[2]; appends apikey.created to KEYS[1].
]]
--- @include "dg_error"
--- @include "dg_now_ms"
--- @include "dg_emit"
--- @include "dg_backlog_full"
local full = dg_backlog_full(KEYS[1], ARGV[1])
if full then return dg_error('PERSISTENCE_LAGGING', full) end
if redis.call('EXISTS', KEYS[2]) == 1 then
  return dg_error('ALREADY_EXISTS', {key_id = ARGV[2]})
end
local now = dg_now_ms()
redis.call('HSET', KEYS[2], 'secret_sha256', ARGV[3], 'role', ARGV[4], 'tenant_id', ARGV[5],
  'created_ms', now)
local payload = {key_id = ARGV[2], secret_sha256 = ARGV[3], role = ARGV[4],
  tenant_id = ARGV[5], created_ms = now}
dg_emit(KEYS[1], 'apikey.created', 'apikey:' .. ARGV[2], 1, payload)
return cjson.encode({key_id = ARGV[2], role = ARGV[4], tenant_id = ARGV[5], created_ms = now})
