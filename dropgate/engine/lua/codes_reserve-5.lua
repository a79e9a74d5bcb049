--[[
  Reserve up to `count` available codes of one type under a fresh reserve_id until
  now + ttl (Redis time). First, up to `count` + 64 expired reservations return to
  the available set (lazily, here: no cron), keeping their last reserve_id so the
  old holder may still assign them until someone else takes them. A low pool answers
  fewer codes, or none: never an error, never a code twice (SPOP is atomic here).
  KEYS[1] partition log       <prefix>:{pN}:log
  KEYS[2] campaign meta hash  <prefix>:{pN}:t:<tenant>:codes:<campaign>:meta
  KEYS[3] code records hash   <prefix>:{pN}:t:<tenant>:codes:<campaign>:records
  KEYS[4] available set       <prefix>:{pN}:t:<tenant>:codes:<campaign>:type:<type>:available
  KEYS[5] reserved zset       <prefix>:{pN}:t:<tenant>:codes:<campaign>:type:<type>:reserved
  ARGV[1] backlog bound   ARGV[2] tenant id   ARGV[3] campaign id   ARGV[4] type
  ARGV[5] reserve id   ARGV[6] count   ARGV[7] ttl ms
  Returns {"reserve_id": id, "codes": [...], "reserved_at_ms": n, "expires_at_ms": n}
  Errors: PERSISTENCE_LAGGING
  Writes KEYS[2], KEYS[3], KEYS[4], KEYS[5]; appends codes.reserved to KEYS[1] when
  anything changed (codes taken or expired reservations returned).
]]
--- @include "dg_error"
--- @include "dg_now_ms"
--- @include "dg_emit"
--- @include "dg_backlog_full"
--- @include "dg_call_chunked"
--- @include "dg_code_unpack"
--- @include "dg_code_pack"
--- @include "dg_code_row"
--- @include "dg_json_strings"
local full = dg_backlog_full(KEYS[1], ARGV[1])
if full then return dg_error('PERSISTENCE_LAGGING', full) end
local now = dg_now_ms()
local count = tonumber(ARGV[6])
local expires = now + tonumber(ARGV[7])
local rid = ARGV[5]
local rows = {}
-- expired reservations go back to the pool (they already count as available)
local expired = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', now, 'LIMIT', 0, count + 64)
if #expired > 0 then
  local recs = dg_call_chunked('HMGET', KEYS[3], expired, 4000)
  local fields = {}
  local back = {}
  for i = 1, #expired do
    if recs[i] then
      local r = dg_code_unpack(recs[i])
      r.status = 'a'
      fields[#fields + 1] = expired[i]
      fields[#fields + 1] = dg_code_pack(r)
      back[#back + 1] = expired[i]
      rows[#rows + 1] = dg_code_row(expired[i], r)
    end
  end
  dg_call_chunked('ZREM', KEYS[5], expired, 4000)
  if #back > 0 then
    dg_call_chunked('HSET', KEYS[3], fields, 4000)
    dg_call_chunked('SADD', KEYS[4], back, 4000)
  end
end
local taken = redis.call('SPOP', KEYS[4], count)
if #taken > 0 then
  local fields, scored = {}, {}
  local r = {type = ARGV[4], status = 'r', rid = rid, reserved_at = tostring(now),
             expires_at = tostring(expires), assigned_at = ''}
  local packed = dg_code_pack(r)
  for i = 1, #taken do
    fields[#fields + 1] = taken[i]
    fields[#fields + 1] = packed
    scored[#scored + 1] = expires
    scored[#scored + 1] = taken[i]
    rows[#rows + 1] = dg_code_row(taken[i], r)
  end
  dg_call_chunked('HSET', KEYS[3], fields, 4000)
  dg_call_chunked('ZADD', KEYS[5], scored, 4000)
end
if #rows > 0 then
  local version = redis.call('HINCRBY', KEYS[2], 'version', 1)
  dg_emit(KEYS[1], 'codes.reserved', 'codes:' .. ARGV[2] .. ':' .. ARGV[3], version, {
    tenant_id = ARGV[2], campaign_id = ARGV[3], type = ARGV[4], reserve_id = rid,
    taken = #taken, rows = rows})
end
return '{"reserve_id":"' .. rid .. '","codes":' .. dg_json_strings(taken) ..
  ',"reserved_at_ms":' .. now .. ',"expires_at_ms":' .. expires .. '}'
