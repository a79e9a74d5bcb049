--[[
  Re-emit a tenant's Redis state into the log (reconcile --repair), for PostgreSQL to
  catch up when it lacks the tenant or holds an older version and no event of the
  tenant is waiting (a lost or dead-lettered event). Changes no state.
  KEYS[1] partition log       <prefix>:{pN}:log
  KEYS[2] tenant hash         <prefix>:{pN}:tenant:<tenant>
  ARGV[1] backlog bound   ARGV[2] tenant id
  Returns {"version": n}
  Errors: NOT_FOUND, PERSISTENCE_LAGGING
  Writes nothing; appends tenant.saved (the current version) to KEYS[1].
]]
--- @include "dg_error"
--- @include "dg_emit"
--- @include "dg_backlog_full"
local full = dg_backlog_full(KEYS[1], ARGV[1])
if full then return dg_error('PERSISTENCE_LAGGING', full) end
local t = redis.call('HMGET', KEYS[2], 'name', 'status', 'trial_end_ms', 'created_ms', 'version')
if t[5] == false then return dg_error('NOT_FOUND', {tenant_id = ARGV[2]}) end
dg_emit(KEYS[1], 'tenant.saved', 'tenant:' .. ARGV[2], tonumber(t[5]), {
  tenant_id = ARGV[2], name = t[1], status = t[2], trial_end_ms = tonumber(t[3]) or cjson.null,
  created_ms = tonumber(t[4])})
return '{"version":' .. t[5] .. '}'
