--[[
  Make a staged upload's codes of one type live in one step: the staged set joins
  the available set (RENAME when the pool has none yet, else one SUNIONSTORE), the
  type becomes the campaign's. Run once per type after every batch was staged.
  KEYS[1] partition log       <prefix>:{pN}:log
  KEYS[2] campaign meta hash  <prefix>:{pN}:t:<tenant>:codes:<campaign>:meta
  KEYS[3] available set       <prefix>:{pN}:t:<tenant>:codes:<campaign>:type:<type>:available
  KEYS[4] upload's staged set <prefix>:{pN}:t:<tenant>:codes:<campaign>:upload:<upload id>:staged
  KEYS[5] upload's seen set   <prefix>:{pN}:t:<tenant>:codes:<campaign>:upload:<upload id>
  ARGV[1] tenant id   ARGV[2] campaign id   ARGV[3] type   ARGV[4] upload number
  ARGV[5] '1' on the upload's last type: its pending mark (meta `p:<number>`) goes
  Returns {"committed": n}
  Errors: CONFLICT
  (CONFLICT: the upload is no longer pending, a restore dropped its staging.)
  (The batches were checked against the backlog bound as they came.)
  Writes KEYS[2], KEYS[3], KEYS[4], KEYS[5]; appends codes.committed to KEYS[1] (with
  `last` = ARGV[5], so PostgreSQL keeps the upload pending until its last type, and
  the campaign's `created_ms`, which becomes its created_at there).
]]
--- @include "dg_error"
--- @include "dg_now_ms"
--- @include "dg_emit"
if redis.call('HEXISTS', KEYS[2], 'p:' .. ARGV[4]) == 0 then
  return dg_error('CONFLICT', {upload = tonumber(ARGV[4]), reason = 'upload_aborted'})
end
-- validated: now write
local n = redis.call('SCARD', KEYS[4])
if n > 0 then
  if redis.call('EXISTS', KEYS[3]) == 0 then
    redis.call('RENAME', KEYS[4], KEYS[3])
    redis.call('PERSIST', KEYS[3])  -- the staged set's expiry must not follow it
  else
    redis.call('SUNIONSTORE', KEYS[3], KEYS[3], KEYS[4])
    redis.call('DEL', KEYS[4])
  end
end
redis.call('DEL', KEYS[5])
redis.call('HSET', KEYS[2], 't:' .. ARGV[3], 1)
if ARGV[5] == '1' then redis.call('HDEL', KEYS[2], 'p:' .. ARGV[4]) end
-- the version stays: the rows in PostgreSQL were written (or go) with the staged
-- batches, so the campaign's newest row version is unchanged
redis.call('HSETNX', KEYS[2], 'version', 0)
local version = tonumber(redis.call('HGET', KEYS[2], 'version'))
dg_emit(KEYS[1], 'codes.committed', 'codes:' .. ARGV[1] .. ':' .. ARGV[2], version, {
  tenant_id = ARGV[1], campaign_id = ARGV[2], upload = tonumber(ARGV[4]), type = ARGV[3],
  at_ms = dg_now_ms(), last = ARGV[5] == '1',
  created_ms = tonumber(redis.call('HGET', KEYS[2], 'created_ms')) or cjson.null})
return '{"committed":' .. n .. '}'
