--[[
  Add one batch of an upload to a campaign's pool of one type. New codes become
  available; codes already known keep their status (counted as updated); codes this
  upload has already met in an earlier batch are skipped (the caller de-duplicates
  within a batch). A code known under another type refuses the whole batch.
  How an upload of several batches knows what it met before, without a set of every
  code it sent (that SADD was a quarter of the script's time): each upload gets a
  number (the campaign meta's `uploads` counter) and the codes it inserts carry it in
  their record (`type|a#<n>`, kept by every script that rewrites a record), so a
  repeat of one of them is recognised from the record HMGET already returns. Only
  codes that existed before the upload go into the seen set (KEYS[5]) when first met.
  KEYS[1] partition log       <prefix>:{pN}:log
  KEYS[2] campaign meta hash  <prefix>:{pN}:t:<tenant>:codes:<campaign>:meta
  KEYS[3] code records hash   <prefix>:{pN}:t:<tenant>:codes:<campaign>:records
  KEYS[4] available set       <prefix>:{pN}:t:<tenant>:codes:<campaign>:type:<type>:available
  KEYS[5] upload's seen set   <prefix>:{pN}:t:<tenant>:codes:<campaign>:upload:<upload id>
  KEYS[6] upload's staged set <prefix>:{pN}:t:<tenant>:codes:<campaign>:upload:<upload id>:staged
  Staged (ARGV[9] = '1'; an upload of several batches): the new codes are recorded
  (so later batches and other uploads see them) but go into KEYS[6], not the
  available set: nothing of the upload is reservable until codes_commit moves the
  staged set in at once, or codes_discard removes them (all or nothing, #21).
  A staged upload is marked pending in the meta hash (`p:<number>` = its upload id,
  set by its first batch, dropped by its last commit or discard): reconcile counts its
  records as staged, not available; a restore drops the mark (Redis lost the upload's
  staging), and a later batch or commit of the upload is then refused (CONFLICT).
  ARGV[1] backlog bound   ARGV[2] tenant id   ARGV[3] campaign id   ARGV[4] type
  ARGV[5] seen-set ttl ms ('' = single-batch upload: KEYS[5] unused, no upload number)
  ARGV[6] '1' when this is the upload's last batch (KEYS[5] is deleted)
  ARGV[7] the batch's codes (distinct, validated), joined by newlines: one argument
          is much cheaper to send and unpack than 10,000
  ARGV[8] the upload's number: '' with ARGV[5] = '', 'new' on its first batch (one is
          allocated and returned), else the number the first batch returned
  ARGV[9] '1': stage the new codes in KEYS[6] (see above); else make them available
  Returns {"inserted": n, "updated": n, "skipped": n, "upload": number or 0}
  Errors: CONFLICT, PERSISTENCE_LAGGING
  (CONFLICT: a code of another type, or a staged batch of an upload no longer pending.)
  Writes KEYS[2], KEYS[3], KEYS[4] or KEYS[6], KEYS[5]; appends codes.uploaded (with
  `staged` = the upload number when staged, and the campaign's `created_ms`, which a
  campaign the batch creates in PostgreSQL takes as created_at) to KEYS[1] when the
  batch inserted anything.
]]
--- @include "dg_error"
--- @include "dg_now_ms"
--- @include "dg_emit"
--- @include "dg_backlog_full"
--- @include "dg_call_chunked"
local full = dg_backlog_full(KEYS[1], ARGV[1])
if full then return dg_error('PERSISTENCE_LAGGING', full) end
local ctype = ARGV[4]
local use_seen = ARGV[5] ~= ''
local codes = {}
for code in string.gmatch(ARGV[7], '[^\n]+') do codes[#codes + 1] = code end
local upload = ARGV[8]
if ARGV[9] == '1' and upload ~= '' and upload ~= 'new'
    and redis.call('HEXISTS', KEYS[2], 'p:' .. upload) == 0 then
  return dg_error('CONFLICT', {upload = tonumber(upload), reason = 'upload_aborted'})
end
local skipped, updated = 0, 0
local inserted, fields, known = {}, {}, {}
if #codes > 0 then
  local recs = dg_call_chunked('HMGET', KEYS[3], codes, 4000)
  local prefix = ctype .. '|'
  -- a mark is only compared once a known code turns up: the first batch allocates its
  -- number below, after this check (nothing can carry it yet)
  local mark = (upload ~= '' and upload ~= 'new') and ('#' .. upload) or nil
  for i = 1, #codes do
    local rec = recs[i]
    if rec then
      if string.sub(rec, 1, #prefix) ~= prefix then
        return dg_error('CONFLICT', {code = codes[i], type = string.match(rec, '^[^|]*'),
                                     index = i - 1})
      end
      if mark and string.sub(rec, -#mark) == mark then
        skipped = skipped + 1  -- inserted by an earlier batch of this upload
      else
        known[#known + 1] = codes[i]
      end
    else
      inserted[#inserted + 1] = codes[i]
    end
  end
end
-- validated: now write (one clock reading: a campaign created now has created_ms = at_ms)
local now = dg_now_ms()
if upload == 'new' then upload = tostring(redis.call('HINCRBY', KEYS[2], 'uploads', 1)) end
local staged = ARGV[9] == '1' and upload ~= ''
if staged and ARGV[8] == 'new' then
  redis.call('HSET', KEYS[2], 'p:' .. upload, string.match(KEYS[5], ':upload:([^:]+)$'))
end
local created_ms = now
if redis.call('HSETNX', KEYS[2], 'created_ms', now) == 0 then
  created_ms = tonumber(redis.call('HGET', KEYS[2], 'created_ms'))
end
-- A known code is `updated` the first time this upload meets it and `skipped` after
-- (the seen set holds the known codes earlier batches met).
if use_seen and #known > 0 then
  local seen = dg_call_chunked('SMISMEMBER', KEYS[5], known, 4000)
  local first = {}
  for i = 1, #known do
    if seen[i] == 1 then skipped = skipped + 1 else first[#first + 1] = known[i] end
  end
  updated = #first
  if #first > 0 and ARGV[6] ~= '1' then dg_call_chunked('SADD', KEYS[5], first, 4000) end
else
  updated = #known
end
if use_seen then
  if ARGV[6] == '1' then
    redis.call('DEL', KEYS[5])
  elseif redis.call('EXISTS', KEYS[5]) == 1 then
    redis.call('PEXPIRE', KEYS[5], ARGV[5])
  end
end
if #inserted > 0 then
  local record = ctype .. '|a'
  if upload ~= '' then record = record .. '#' .. upload end
  for i = 1, #inserted do
    fields[#fields + 1] = inserted[i]
    fields[#fields + 1] = record
  end
  dg_call_chunked('HSET', KEYS[3], fields, 4000)
  if staged then
    dg_call_chunked('SADD', KEYS[6], inserted, 4000)
    redis.call('PEXPIRE', KEYS[6], ARGV[5])  -- an abandoned upload's staging goes away
  else
    dg_call_chunked('SADD', KEYS[4], inserted, 4000)
    redis.call('HSET', KEYS[2], 't:' .. ctype, 1)
  end
  -- a staged batch changes nothing live: the campaign's version stays (its rows carry
  -- the current one, so reconcile's newest-row version still matches)
  local version
  if staged then
    redis.call('HSETNX', KEYS[2], 'version', 0)
    version = tonumber(redis.call('HGET', KEYS[2], 'version'))
  else
    version = redis.call('HINCRBY', KEYS[2], 'version', 1)
  end
  -- the new codes as one newline-joined string: when all are new (the bulk case) that
  -- is ARGV[7] itself, and no 10,000-element JSON array is built
  local codes_text = ARGV[7]
  if #inserted < #codes then codes_text = table.concat(inserted, '\n') end
  dg_emit(KEYS[1], 'codes.uploaded', 'codes:' .. ARGV[2] .. ':' .. ARGV[3], version, {
    tenant_id = ARGV[2], campaign_id = ARGV[3], type = ctype, codes_text = codes_text,
    at_ms = now, staged = staged and tonumber(upload) or cjson.null, created_ms = created_ms})
end
return '{"inserted":' .. #inserted .. ',"updated":' .. updated .. ',"skipped":' .. skipped ..
  ',"upload":' .. (tonumber(upload) or 0) .. '}'
