--[[
  Discard (part of) an abandoned staged upload's codes of one type: an upload whose
  server died mid-way (#21) never commits nor discards, its staged set expires with
  its TTL and its records (`<type>|a#<upload>`) and pending mark (meta `p:<number>`)
  stay behind. The caller found those records (HSCAN) and passes them; each is removed
  when it is still the one the upload wrote and not in the available set (a type of
  the upload that already committed is live). Refused while the upload is still
  staging: its pending mark must name this upload id and its staged set of this type
  and its seen set must be gone (both expire together, refreshed by each batch).
  KEYS[1] partition log       <prefix>:{pN}:log
  KEYS[2] campaign meta hash  <prefix>:{pN}:t:<tenant>:codes:<campaign>:meta
  KEYS[3] code records hash   <prefix>:{pN}:t:<tenant>:codes:<campaign>:records
  KEYS[4] available set       <prefix>:{pN}:t:<tenant>:codes:<campaign>:type:<type>:available
  KEYS[5] upload's staged set <prefix>:{pN}:t:<tenant>:codes:<campaign>:upload:<upload id>:staged:<type>
  KEYS[6] upload's seen set   <prefix>:{pN}:t:<tenant>:codes:<campaign>:upload:<upload id>
  ARGV[1] tenant id   ARGV[2] campaign id   ARGV[3] type   ARGV[4] upload number
  ARGV[5] upload id   ARGV[6] '1' on the upload's last call: its pending mark goes and
          codes.discarded is appended (the persister deletes its rows and pending row)
  ARGV[7..] codes (the upload's records of this type)
  Returns {"removed": n, "abandoned": true}, or {"removed": 0, "abandoned": false} when
  the upload is not pending under this id or still staging (nothing written)
  Errors: none
  Writes KEYS[2], KEYS[3]; appends codes.discarded to KEYS[1] on the last call.
]]
--- @include "dg_emit"
--- @include "dg_call_chunked"
if redis.call('HGET', KEYS[2], 'p:' .. ARGV[4]) ~= ARGV[5]
    or redis.call('EXISTS', KEYS[5]) == 1 or redis.call('EXISTS', KEYS[6]) == 1 then
  return '{"removed":0,"abandoned":false}'
end
local codes = {}
for i = 7, #ARGV do codes[#codes + 1] = ARGV[i] end
local removed = {}
if #codes > 0 then
  local recs = dg_call_chunked('HMGET', KEYS[3], codes, 4000)
  local live = dg_call_chunked('SMISMEMBER', KEYS[4], codes, 4000)
  local mine = ARGV[3] .. '|a#' .. ARGV[4]
  for i = 1, #codes do
    if recs[i] == mine and live[i] == 0 then removed[#removed + 1] = codes[i] end
  end
  if #removed > 0 then dg_call_chunked('HDEL', KEYS[3], removed, 4000) end
end
-- validated: now write
if ARGV[6] == '1' then
  redis.call('HDEL', KEYS[2], 'p:' .. ARGV[4])
  -- the version stays, as for codes_discard: the rows were written with the staged batches
  redis.call('HSETNX', KEYS[2], 'version', 0)
  local version = tonumber(redis.call('HGET', KEYS[2], 'version'))
  dg_emit(KEYS[1], 'codes.discarded', 'codes:' .. ARGV[1] .. ':' .. ARGV[2], version, {
    tenant_id = ARGV[1], campaign_id = ARGV[2], upload = tonumber(ARGV[4])})
end
return '{"removed":' .. #removed .. ',"abandoned":true}'
