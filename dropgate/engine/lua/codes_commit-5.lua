--[[
  Make a staged upload's codes of one type live in one step: the staged set joins
  the available set, the type becomes the campaign's. Run once per type after every
  batch was staged. Redis is held in proportion to the smaller of the pool and the
  upload, never the larger (a SUNIONSTORE alone rebuilds the whole pool: a 10,000-code
  top-up of a 1,000,000-code pool held every other command for 730 ms; BENCHMARKS.md):
  - no pool yet: the staged set becomes it (RENAME);
  - one set under a third of the other: its members move into the larger (SPOP + SADD,
    1,000 at a time, about 2 us each), which ends as the pool (RENAME when it was the
    staged one);
  - sizes within 3x: one SUNIONSTORE (about 0.6 us per member of both, so cheaper there).
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
-- every member of `from` joins `into`; `from` ends empty, so gone
local function pour(from, into)
  while true do
    local moved = redis.call('SPOP', from, 1000)
    if #moved == 0 then return end
    redis.call('SADD', into, unpack(moved))
  end
end
local n = redis.call('SCARD', KEYS[4])
if n > 0 then
  local pooled = redis.call('SCARD', KEYS[3])
  if pooled > 0 and 3 * math.min(n, pooled) >= math.max(n, pooled) then
    redis.call('SUNIONSTORE', KEYS[3], KEYS[3], KEYS[4])
    redis.call('DEL', KEYS[4])
  elseif n < pooled then
    pour(KEYS[4], KEYS[3])
  else
    pour(KEYS[3], KEYS[4])  -- nothing when the pool has none yet
    redis.call('RENAME', KEYS[4], KEYS[3])
    redis.call('PERSIST', KEYS[3])  -- the staged set's expiry must not follow it
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
