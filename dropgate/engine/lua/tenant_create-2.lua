--[[
  Create a tenant with its subscription status.
  KEYS[1] partition log       <prefix>:{pN}:log
  KEYS[2] tenant hash         <prefix>:{pN}:tenant:<tenant>
  ARGV[1] backlog bound   ARGV[2] tenant id   ARGV[3] name
  ARGV[4] subscription status   ARGV[5] trial end ms ('' for none)
  ARGV[6] changed by (the creating key's id; '' the bootstrap key or the CLI)
  Returns the tenant hash as an object (strings), with "version".
  Errors: ALREADY_EXISTS, PERSISTENCE_LAGGING
  Writes KEYS[2]; appends tenant.saved to KEYS[1].
]]
--- @include "dg_error"
--- @include "dg_now_ms"
--- @include "dg_emit"
--- @include "dg_backlog_full"
local full = dg_backlog_full(KEYS[1], ARGV[1])
if full then return dg_error('PERSISTENCE_LAGGING', full) end
if redis.call('EXISTS', KEYS[2]) == 1 then
  return dg_error('ALREADY_EXISTS', {tenant_id = ARGV[2]})
end
local now = dg_now_ms()
redis.call('HSET', KEYS[2], 'tenant_id', ARGV[2], 'name', ARGV[3], 'status', ARGV[4],
  'created_ms', now, 'version', 1)
if ARGV[5] ~= '' then redis.call('HSET', KEYS[2], 'trial_end_ms', ARGV[5]) end
local payload = {tenant_id = ARGV[2], name = ARGV[3], status = ARGV[4],
  trial_end_ms = tonumber(ARGV[5]) or cjson.null, created_ms = now, changed_ms = now,
  changed_by = ARGV[6]}
dg_emit(KEYS[1], 'tenant.saved', 'tenant:' .. ARGV[2], 1, payload)
payload.version = 1
return cjson.encode(payload)
