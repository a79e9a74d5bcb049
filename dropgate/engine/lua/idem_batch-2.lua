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
  ARGV[3] the items, one JSON array of ["b", field, fingerprint] (begin), ["f", field,
          fingerprint, status, body length in bytes] (finish), ["r", field, fingerprint]
          (release); field = "<tenant>:<key digest>" (one argument, not 3 to 5 per item:
          packing arguments is the caller's main cost)
  ARGV[4] the finishes' bodies, one after the other in their order in ARGV[3] (raw:
          never escaped into JSON and decoded again)
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
local items = cjson.decode(ARGV[3])
local fields = {}
for n, item in ipairs(items) do fields[n] = item[2] end
idem.load(fields)
local now = dg_now_ms()
local out = {}
local body_at = 1
for n, item in ipairs(items) do
  local op, field, fp = item[1], item[2], item[3]
  if op == 'b' then
    local rec = idem.read(field, now)
    local decided = idem.decide(rec, fp)
    if decided == 'replay' then
      out[n] = rec.status .. ' ' .. rec.body
    elseif decided == 'IDEMPOTENCY_KEY_IN_USE' and rec.at + stale <= now then
      idem.rerun(field, rec, now)
      out[n] = ''
    elseif decided then
      out[n] = '!' .. decided
    else
      idem.begin(field, fp, now, ttl, nil)
      out[n] = ''
    end
  elseif op == 'f' then
    local body = string.sub(ARGV[4], body_at, body_at + item[5] - 1)
    body_at = body_at + item[5]
    out[n] = idem.store(field, tostring(item[4]), body) and '1' or '0'
  else
    out[n] = idem.release(field, fp) and '1' or '0'
  end
end
idem.flush()
if #out == 0 then return '[]' end
return cjson.encode(out)
