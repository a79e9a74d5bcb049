--[[
  Release reservations: each code that holds one (live or expired, and under the
  given reserve_id when one is given) becomes plainly available again, its
  reservation forgotten. Assigned codes are never touched; releasing twice changes
  nothing the second time.
  KEYS[1] partition log       <prefix>:{pN}:log
  KEYS[2] campaign meta hash  <prefix>:{pN}:t:<tenant>:codes:<campaign>:meta
  KEYS[3] code records hash   <prefix>:{pN}:t:<tenant>:codes:<campaign>:records
  KEYS[4] available set       <prefix>:{pN}:t:<tenant>:codes:<campaign>:type:<type>:available
  KEYS[5] reserved zset       <prefix>:{pN}:t:<tenant>:codes:<campaign>:type:<type>:reserved
  ARGV[1] backlog bound   ARGV[2] tenant id   ARGV[3] campaign id   ARGV[4] type
  ARGV[5] reserve id ('' = any reservation)   ARGV[6..] codes (distinct)
  Returns {"updated": n}
  Errors: PERSISTENCE_LAGGING
  Writes KEYS[2], KEYS[3], KEYS[4], KEYS[5]; appends codes.released to KEYS[1] when
  any code changed.
]]
--- @include "dg_error"
--- @include "dg_emit"
--- @include "dg_backlog_full"
--- @include "dg_call_chunked"
--- @include "dg_code_unpack"
--- @include "dg_code_pack"
--- @include "dg_code_row"
local full = dg_backlog_full(KEYS[1], ARGV[1])
if full then return dg_error('PERSISTENCE_LAGGING', full) end
local codes = {}
for i = 6, #ARGV do codes[#codes + 1] = ARGV[i] end
if #codes == 0 then return '{"updated":0}' end
local want = ARGV[5]
local recs = dg_call_chunked('HMGET', KEYS[3], codes, 4000)
local fields, from_reserved, done, rows = {}, {}, {}, {}
for i = 1, #codes do
  if recs[i] then
    local r = dg_code_unpack(recs[i])
    if r.type == ARGV[4] and r.status ~= 's' and r.rid ~= '' and (want == '' or r.rid == want) then
      if r.status == 'r' then from_reserved[#from_reserved + 1] = codes[i] end
      local back = {type = r.type, status = 'a', rid = '', reserved_at = '', expires_at = '',
                    assigned_at = '', mark = r.mark}
      fields[#fields + 1] = codes[i]
      fields[#fields + 1] = dg_code_pack(back)
      done[#done + 1] = codes[i]
      rows[#rows + 1] = dg_code_row(codes[i], back)
    end
  end
end
if #done == 0 then return '{"updated":0}' end
-- validated: now write
if #from_reserved > 0 then
  dg_call_chunked('ZREM', KEYS[5], from_reserved, 4000)
  dg_call_chunked('SADD', KEYS[4], from_reserved, 4000)
end
dg_call_chunked('HSET', KEYS[3], fields, 4000)
local version = redis.call('HINCRBY', KEYS[2], 'version', 1)
dg_emit(KEYS[1], 'codes.released', 'codes:' .. ARGV[2] .. ':' .. ARGV[3], version, {
  tenant_id = ARGV[2], campaign_id = ARGV[3], type = ARGV[4], rows = rows})
return '{"updated":' .. #done .. '}'
