--[[
  Throw away (part of) a refused upload's staged codes of one type: up to ARGV[6]
  staged codes are removed with their records, when the record is still the one the
  upload wrote (`<type>|a#<upload>`: nobody reserved or re-recorded it since). The
  caller repeats until `left` is 0; the last call appends codes.discarded.
  KEYS[1] partition log       <prefix>:{pN}:log
  KEYS[2] campaign meta hash  <prefix>:{pN}:t:<tenant>:codes:<campaign>:meta
  KEYS[3] code records hash   <prefix>:{pN}:t:<tenant>:codes:<campaign>:records
  KEYS[4] upload's staged set <prefix>:{pN}:t:<tenant>:codes:<campaign>:upload:<upload id>:staged
  KEYS[5] upload's seen set   <prefix>:{pN}:t:<tenant>:codes:<campaign>:upload:<upload id>
  ARGV[1] tenant id   ARGV[2] campaign id   ARGV[3] type   ARGV[4] upload number
  ARGV[5] '1' to append codes.discarded once the staged set is empty (the caller sets
          it on the upload's last type only: the event discards every type of the
          upload not committed in PostgreSQL, and ends it there)   ARGV[6] codes per call
  ARGV[7] '1' on the upload's last type: its pending mark (meta `p:<number>`) goes
          once the staged set is empty
  Returns {"removed": n, "left": n}
  Errors: none
  Writes KEYS[2], KEYS[3], KEYS[4], KEYS[5]; appends codes.discarded to KEYS[1] on the last call.
]]
--- @include "dg_emit"
--- @include "dg_call_chunked"
local codes = redis.call('SPOP', KEYS[4], tonumber(ARGV[6]))
local removed = {}
if #codes > 0 then
  local recs = dg_call_chunked('HMGET', KEYS[3], codes, 4000)
  local mine = ARGV[3] .. '|a#' .. ARGV[4]
  for i = 1, #codes do
    if recs[i] == mine then removed[#removed + 1] = codes[i] end
  end
  if #removed > 0 then dg_call_chunked('HDEL', KEYS[3], removed, 4000) end
end
local left = redis.call('SCARD', KEYS[4])
if left == 0 then
  redis.call('DEL', KEYS[5])
  if ARGV[7] == '1' then redis.call('HDEL', KEYS[2], 'p:' .. ARGV[4]) end
  if ARGV[5] == '1' then
    -- the version stays: the rows in PostgreSQL were written (or go) with the staged
    -- batches, so the campaign's newest row version is unchanged
    redis.call('HSETNX', KEYS[2], 'version', 0)
    local version = tonumber(redis.call('HGET', KEYS[2], 'version'))
    dg_emit(KEYS[1], 'codes.discarded', 'codes:' .. ARGV[1] .. ':' .. ARGV[2], version, {
      tenant_id = ARGV[1], campaign_id = ARGV[2], upload = tonumber(ARGV[4])})
  end
end
return '{"removed":' .. #removed .. ',"left":' .. left .. '}'
