--[[
  Re-emit campaign codes' Redis state into the log (reconcile --repair), for
  PostgreSQL to catch up: one codes.resynced event carrying each given code's type
  and full record (a row deleted by hand, a lost or dead-lettered event), at the
  campaign's current version; the applier upserts them. Changes no state. A code's
  upload time is not kept in Redis: rows it inserts take the repair time as
  uploaded_at (at_ms).
  KEYS[1] partition log       <prefix>:{pN}:log
  KEYS[2] campaign meta hash  <prefix>:{pN}:t:<tenant>:codes:<campaign>:meta
  KEYS[3] code records hash   <prefix>:{pN}:t:<tenant>:codes:<campaign>:records
  ARGV[1] backlog bound   ARGV[2] tenant id   ARGV[3] campaign id
  ARGV[4..] codes (each must be in KEYS[3])
  Returns {"version": n, "codes": number of codes emitted}
  Errors: NOT_FOUND, CONFLICT, PERSISTENCE_LAGGING
  Writes nothing; appends codes.resynced to KEYS[1].
]]
--- @include "dg_error"
--- @include "dg_now_ms"
--- @include "dg_emit"
--- @include "dg_backlog_full"
--- @include "dg_call_chunked"
--- @include "dg_code_unpack"
--- @include "dg_code_row"
local full = dg_backlog_full(KEYS[1], ARGV[1])
if full then return dg_error('PERSISTENCE_LAGGING', full) end
local version = redis.call('HGET', KEYS[2], 'version')
if version == false then return dg_error('NOT_FOUND', {campaign_id = ARGV[3]}) end
local codes = {}
for i = 4, #ARGV do codes[#codes + 1] = ARGV[i] end
local recs = {}
if #codes > 0 then recs = dg_call_chunked('HMGET', KEYS[3], codes, 4000) end
local rows = {}
for i = 1, #codes do
  if not recs[i] then return dg_error('CONFLICT', {campaign_id = ARGV[3], code = codes[i]}) end
  local r = dg_code_unpack(recs[i])
  local row = dg_code_row(codes[i], r)
  row[#row + 1] = r.type
  rows[#rows + 1] = row
end
dg_emit(KEYS[1], 'codes.resynced', 'codes:' .. ARGV[2] .. ':' .. ARGV[3], tonumber(version), {
  tenant_id = ARGV[2], campaign_id = ARGV[3], rows = rows, at_ms = dg_now_ms()})
return cjson.encode({version = tonumber(version), codes = #codes})
