--[[
  Assign codes (permanent). A code is assigned when it holds a reservation, live or
  expired (and not yet taken by someone else), and, when a reserve_id is given,
  only under that reserve_id. Codes of another type, unknown, never reserved,
  released or already assigned are left alone (assign is idempotent).
  KEYS[1] partition log       <prefix>:{pN}:log
  KEYS[2] campaign meta hash  <prefix>:{pN}:t:<tenant>:codes:<campaign>:meta
  KEYS[3] code records hash   <prefix>:{pN}:t:<tenant>:codes:<campaign>:records
  KEYS[4] available set       <prefix>:{pN}:t:<tenant>:codes:<campaign>:type:<type>:available
  KEYS[5] reserved zset       <prefix>:{pN}:t:<tenant>:codes:<campaign>:type:<type>:reserved
  KEYS[6] assigned set        <prefix>:{pN}:t:<tenant>:codes:<campaign>:type:<type>:assigned
  KEYS[7] assigned-to hash    <prefix>:{pN}:t:<tenant>:codes:<campaign>:assigned_to
  ARGV[1] backlog bound   ARGV[2] tenant id   ARGV[3] campaign id   ARGV[4] type
  ARGV[5] reserve id ('' = any reservation)   ARGV[6] assigned to ('' = nobody named)
  ARGV[7..] codes (distinct)
  Returns {"updated": n}
  Errors: PERSISTENCE_LAGGING
  Writes KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]; appends codes.assigned to KEYS[1]
  when any code changed.
]]
--- @include "dg_error"
--- @include "dg_now_ms"
--- @include "dg_emit"
--- @include "dg_backlog_full"
--- @include "dg_call_chunked"
--- @include "dg_code_unpack"
--- @include "dg_code_pack"
--- @include "dg_code_row"
local full = dg_backlog_full(KEYS[1], ARGV[1])
if full then return dg_error('PERSISTENCE_LAGGING', full) end
local codes = {}
for i = 7, #ARGV do codes[#codes + 1] = ARGV[i] end
if #codes == 0 then return '{"updated":0}' end
local now = tostring(dg_now_ms())
local want = ARGV[5]
local recs = dg_call_chunked('HMGET', KEYS[3], codes, 4000)
local fields, from_reserved, from_available, done, rows = {}, {}, {}, {}, {}
for i = 1, #codes do
  if recs[i] then
    local r = dg_code_unpack(recs[i])
    if r.type == ARGV[4] and r.status ~= 's' and r.rid ~= '' and (want == '' or r.rid == want) then
      if r.status == 'r' then
        from_reserved[#from_reserved + 1] = codes[i]
      else
        from_available[#from_available + 1] = codes[i]
      end
      r.status = 's'
      r.assigned_at = now
      fields[#fields + 1] = codes[i]
      fields[#fields + 1] = dg_code_pack(r)
      done[#done + 1] = codes[i]
      rows[#rows + 1] = dg_code_row(codes[i], r)
    end
  end
end
if #done == 0 then return '{"updated":0}' end
-- validated: now write
if #from_reserved > 0 then dg_call_chunked('ZREM', KEYS[5], from_reserved, 4000) end
if #from_available > 0 then dg_call_chunked('SREM', KEYS[4], from_available, 4000) end
dg_call_chunked('SADD', KEYS[6], done, 4000)
dg_call_chunked('HSET', KEYS[3], fields, 4000)
if ARGV[6] ~= '' then
  local to = {}
  for i = 1, #done do
    to[#to + 1] = done[i]
    to[#to + 1] = ARGV[6]
  end
  dg_call_chunked('HSET', KEYS[7], to, 4000)
end
local version = redis.call('HINCRBY', KEYS[2], 'version', 1)
dg_emit(KEYS[1], 'codes.assigned', 'codes:' .. ARGV[2] .. ':' .. ARGV[3], version, {
  tenant_id = ARGV[2], campaign_id = ARGV[3], type = ARGV[4], rows = rows,
  assigned_to = ARGV[6] ~= '' and ARGV[6] or cjson.null})
return '{"updated":' .. #done .. '}'
