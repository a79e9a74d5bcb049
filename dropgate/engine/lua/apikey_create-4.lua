--[[
  Store an API key: only the SHA-256 of its secret is kept, never the secret. A key
  minted by another key lives in its minter's partition (the caller draws the id so),
  and is refused when the minter is gone: a revoked key cannot mint, even one whose
  request passed authentication just before the revocation.
  KEYS[1] partition log       <prefix>:{pN}:log
  KEYS[2] api key hash        <prefix>:{pN}:apikey:<key_id>
  KEYS[3] minter's hash       <prefix>:{pN}:apikey:<created_by> (KEYS[2] when none)
  KEYS[4] minter's children   <prefix>:{pN}:apikey:<created_by>:minted (unused when none)
  ARGV[1] backlog bound   ARGV[2] key id   ARGV[3] secret sha256 hex
  ARGV[4] role ('admin' | 'service')   ARGV[5] tenant id ('' for admin)
  ARGV[6] name ('' none)   ARGV[7] scopes (space-separated; '*' all)
  ARGV[8] created by (minter's key id; '' for the bootstrap key or the CLI)
  Returns {key_id, role, tenant_id, name, scopes, created_by, created_ms}
  Errors: ALREADY_EXISTS, UNAUTHORIZED, PERSISTENCE_LAGGING
  (UNAUTHORIZED: the minter was revoked)
  Writes KEYS[2], KEYS[4]; appends apikey.created to KEYS[1].
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
if ARGV[8] ~= '' and redis.call('EXISTS', KEYS[3]) == 0 then
  return dg_error('UNAUTHORIZED', {key_id = ARGV[8]})
end
local now = dg_now_ms()
redis.call('HSET', KEYS[2], 'secret_sha256', ARGV[3], 'role', ARGV[4], 'tenant_id', ARGV[5],
  'created_ms', now)
-- absent (as on keys made before them) when empty, or '*' (every scope)
if ARGV[6] ~= '' then redis.call('HSET', KEYS[2], 'name', ARGV[6]) end
if ARGV[7] ~= '*' then redis.call('HSET', KEYS[2], 'scopes', ARGV[7]) end
if ARGV[8] ~= '' then redis.call('HSET', KEYS[2], 'created_by', ARGV[8]) end
if ARGV[8] ~= '' then redis.call('SADD', KEYS[4], ARGV[2]) end
local payload = {key_id = ARGV[2], secret_sha256 = ARGV[3], role = ARGV[4],
  tenant_id = ARGV[5], created_ms = now, name = ARGV[6], scopes = ARGV[7], created_by = ARGV[8]}
dg_emit(KEYS[1], 'apikey.created', 'apikey:' .. ARGV[2], 1, payload)
return cjson.encode({key_id = ARGV[2], role = ARGV[4], tenant_id = ARGV[5], name = ARGV[6],
  scopes = ARGV[7], created_by = ARGV[8], created_ms = now})
