--[[
  The idempotency records of many requests of one partition, in one call: every route
  that replays by key, except the purchase, whose batch script keeps its records inside
  its own call. Concurrent requests share the call (engine/idempotency.py's Batcher):
  a crowd sending keys paid two script calls of its own per request otherwise.
  Each item is decided on its own, in order, as if it ran alone (a later item reads
  what an earlier one wrote):
    begin:   a live record with another fingerprint -> IDEMPOTENCY_KEY_REUSED; one still
             running -> IDEMPOTENCY_KEY_IN_USE, unless its request has run for ARGV[2] ms
             (it stopped: a crash), which this request takes over; a finished one -> its
             stored answer; none -> marked running for ARGV[1] ms;
    finish:  store the answer of a request begun here (running -> done);
    release: drop its running record (it was refused before any change, so a repeat
             runs again).
  KEYS[1] idempotency hash    <prefix>:{pN}:idem
  KEYS[2] idempotency expiry  <prefix>:{pN}:idem_exp
  ARGV[1] record ttl ms   ARGV[2] ms after which a running record's request counts as stopped
  ARGV[3..] the items, one after another: "b" field fingerprint (begin), "f" field
          fingerprint status body (finish: the answer's body raw), "r" field fingerprint
          (release); field = "<tenant>:<key digest>"
  Returns a JSON array, one string per item: begin "" (begun: run the request, then
  finish it) or "<status> <body>" (the stored answer, its body byte for byte) or "!CODE"
  (an error of that code); finish and release "1" when a running record was stored or
  dropped, else "0".
  Errors: IDEMPOTENCY_KEY_REUSED, IDEMPOTENCY_KEY_IN_USE
  (per item, answered as "!CODE" in its place)
  Writes KEYS[1], KEYS[2]; appends no event (a record is not domain state).
]]
--- @include "dg_now_ms"
--- @include "dg_call_chunked"
--- @include "dg_idem"
local idem = dg_idem(KEYS[1], KEYS[2], true)
local ttl, stale = tonumber(ARGV[1]), tonumber(ARGV[2])
local fields = {}
local i = 3
while i <= #ARGV do
  fields[#fields + 1] = ARGV[i + 1]
  i = i + (ARGV[i] == 'f' and 5 or 3)
end
idem.load(fields)
local now = dg_now_ms()
local out = {}
i = 3
while i <= #ARGV do
  local op, field, fp = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if op == 'b' then
    local rec = idem.read(field, now)
    local decided = idem.decide(rec, fp)
    if decided == 'replay' then
      out[#out + 1] = rec.status .. ' ' .. rec.body
    elseif decided == 'IDEMPOTENCY_KEY_IN_USE' and rec.at + stale <= now then
      idem.rerun(field, rec, now)
      out[#out + 1] = ''
    elseif decided then
      out[#out + 1] = '!' .. decided
    else
      idem.begin(field, fp, now, ttl, nil)
      out[#out + 1] = ''
    end
    i = i + 3
  elseif op == 'f' then
    out[#out + 1] = idem.store(field, ARGV[i + 3], ARGV[i + 4]) and '1' or '0'
    i = i + 5
  else
    local raw = idem.read(field, now)
    out[#out + 1] = (raw and raw.st == 'running' and raw.fp == fp) and '1' or '0'
    idem.release(field, fp)
    i = i + 3
  end
end
idem.flush()
if #out == 0 then return '[]' end
return cjson.encode(out)
