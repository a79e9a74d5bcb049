--[[
  Change a tenant's subscription status. Ordered against every critical operation
  of the tenant by Redis itself: a script that ran before this one saw the old
  status, every later one sees the new.
  KEYS[1] partition log       <prefix>:{pN}:log
  KEYS[2] tenant hash         <prefix>:{pN}:tenant:<tenant>
  ARGV[1] backlog bound   ARGV[2] tenant id   ARGV[3] status   ARGV[4] trial end ms ('' none)
  ARGV[5] changed by (the changing key's id; '' the bootstrap key)
  Returns {tenant_id, name, status, trial_end_ms, created_ms, version}
  Errors: NOT_FOUND, PERSISTENCE_LAGGING
  Writes KEYS[2]; appends tenant.saved to KEYS[1].
]]
--- @include "dg_error"
--- @include "dg_now_ms"
--- @include "dg_emit"
--- @include "dg_backlog_full"
local full = dg_backlog_full(KEYS[1], ARGV[1])
if full then return dg_error('PERSISTENCE_LAGGING', full) end
if redis.call('EXISTS', KEYS[2]) == 0 then
  return dg_error('NOT_FOUND', {tenant_id = ARGV[2]})
end
redis.call('HSET', KEYS[2], 'status', ARGV[3])
if ARGV[4] ~= '' then
  redis.call('HSET', KEYS[2], 'trial_end_ms', ARGV[4])
else
  redis.call('HDEL', KEYS[2], 'trial_end_ms')
end
local version = redis.call('HINCRBY', KEYS[2], 'version', 1)
local t = redis.call('HMGET', KEYS[2], 'name', 'created_ms')
local payload = {tenant_id = ARGV[2], name = t[1], status = ARGV[3],
  trial_end_ms = tonumber(ARGV[4]) or cjson.null, created_ms = tonumber(t[2]),
  changed_ms = dg_now_ms(), changed_by = ARGV[5]}
dg_emit(KEYS[1], 'tenant.saved', 'tenant:' .. ARGV[2], version, payload)
payload.version = version
return cjson.encode(payload)
