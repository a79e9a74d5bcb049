--[[
  Revoke an API key, and with cascade every key it minted, transitively, in one
  atomic step. Bumps the partition's revocation version, which every process compares
  per request with the version its cached answer was built under: once this script
  has answered, no process serves a revoked key.
  A minted key lives in its minter's partition (apikey_create), so the whole tree is
  in KEYS[2]'s hash slot; the children's names are built from ARGV[4], the partition's
  key-hash prefix (the one place a script builds key names: the tree is not known
  before the walk).
  KEYS[1] partition log       <prefix>:{pN}:log
  KEYS[2] api key hash        <prefix>:{pN}:apikey:<key_id>
  KEYS[3] revocation version  <prefix>:{pN}:apikeys:revocations
  ARGV[1] backlog bound   ARGV[2] key id   ARGV[3] cascade ('1' | '0')
  ARGV[4] key-hash prefix <prefix>:{pN}:apikey:
  Returns {"key_id": id, "revoked": [ids], "revocation_version": n}
  Errors: NOT_FOUND, PERSISTENCE_LAGGING
  Deletes KEYS[2] (and with cascade the minted keys' hashes), their :minted sets;
  writes KEYS[3]; appends apikey.revoked per key to KEYS[1].
]]
--- @include "dg_error"
--- @include "dg_now_ms"
--- @include "dg_emit"
--- @include "dg_backlog_full"
local full = dg_backlog_full(KEYS[1], ARGV[1])
if full then return dg_error('PERSISTENCE_LAGGING', full) end
if redis.call('EXISTS', KEYS[2]) == 0 then
  return dg_error('NOT_FOUND', {key_id = ARGV[2]})
end
local revoked = {ARGV[2]}
if ARGV[3] == '1' then
  local i = 1
  while i <= #revoked do
    for _, child in ipairs(redis.call('SMEMBERS', ARGV[4] .. revoked[i] .. ':minted')) do
      if redis.call('EXISTS', ARGV[4] .. child) == 1 then table.insert(revoked, child) end
    end
    i = i + 1
  end
end
local now = dg_now_ms()
for _, id in ipairs(revoked) do
  local creator = redis.call('HGET', ARGV[4] .. id, 'created_by')
  redis.call('DEL', ARGV[4] .. id, ARGV[4] .. id .. ':minted')
  if creator and creator ~= '' then redis.call('SREM', ARGV[4] .. creator .. ':minted', id) end
  dg_emit(KEYS[1], 'apikey.revoked', 'apikey:' .. id, 2, {key_id = id, revoked_ms = now})
end
local version = redis.call('INCR', KEYS[3])
return cjson.encode({key_id = ARGV[2], revoked = revoked, revocation_version = version})
