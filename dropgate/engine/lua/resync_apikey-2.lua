--[[
  Re-emit an API key's Redis record into the log (reconcile --repair), for PostgreSQL
  to catch up when it lacks the key and no event of it is waiting. Changes no state.
  KEYS[1] partition log       <prefix>:{pN}:log
  KEYS[2] api key hash        <prefix>:{pN}:apikey:<key_id>
  ARGV[1] backlog bound   ARGV[2] key id
  Returns {"key_id": id}
  Errors: NOT_FOUND, PERSISTENCE_LAGGING
  Writes nothing; appends apikey.created to KEYS[1].
]]
--- @include "dg_error"
--- @include "dg_emit"
--- @include "dg_backlog_full"
local full = dg_backlog_full(KEYS[1], ARGV[1])
if full then return dg_error('PERSISTENCE_LAGGING', full) end
local k = redis.call('HMGET', KEYS[2], 'secret_sha256', 'role', 'tenant_id', 'created_ms',
  'name', 'scopes', 'created_by')
if k[1] == false then return dg_error('NOT_FOUND', {key_id = ARGV[2]}) end
dg_emit(KEYS[1], 'apikey.created', 'apikey:' .. ARGV[2], 1, {key_id = ARGV[2],
  secret_sha256 = k[1], role = k[2], tenant_id = k[3] or '', created_ms = tonumber(k[4]),
  name = k[5] or '', scopes = k[6] or '*', created_by = k[7] or ''})
return cjson.encode({key_id = ARGV[2]})
