--[[
  Revoke an API key.
  KEYS[1] partition log       <prefix>:{pN}:log
  KEYS[2] api key hash        <prefix>:{pN}:apikey:<key_id>
  ARGV[1] backlog bound   ARGV[2] key id
  Returns {"key_id": id}
  Errors: NOT_FOUND, PERSISTENCE_LAGGING
  Deletes KEYS[2]; appends apikey.revoked to KEYS[1].
]]
--- @include "dg_error"
--- @include "dg_now_ms"
--- @include "dg_emit"
--- @include "dg_backlog_full"
local full = dg_backlog_full(KEYS[1], ARGV[1])
if full then return dg_error('PERSISTENCE_LAGGING', full) end
if redis.call('DEL', KEYS[2]) == 0 then
  return dg_error('NOT_FOUND', {key_id = ARGV[2]})
end
dg_emit(KEYS[1], 'apikey.revoked', 'apikey:' .. ARGV[2], 2, {key_id = ARGV[2], revoked_ms = dg_now_ms()})
return cjson.encode({key_id = ARGV[2]})
