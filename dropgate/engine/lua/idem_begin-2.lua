--[[
  Begin a request under an idempotency key (every route that replays by key, except
  the purchase, whose batch script does the same inside its own call).
  A live record with another fingerprint -> IDEMPOTENCY_KEY_REUSED; one still running
  -> IDEMPOTENCY_KEY_IN_USE, unless its request has run for ARGV[4] ms (it stopped:
  a crash), which this request takes over; a finished one -> its stored answer; none
  -> marked running for ARGV[3] ms.
  KEYS[1] idempotency hash    <prefix>:{pN}:idem
  KEYS[2] idempotency expiry  <prefix>:{pN}:idem_exp
  ARGV[1] field "<tenant>:<key digest>"   ARGV[2] request fingerprint
  ARGV[3] record ttl ms   ARGV[4] ms after which a running record's request counts as stopped
  Returns "" (begun: run the request, then idem_finish), or "<status> <body>" (the
  stored answer, its body byte for byte), or an error code:
  Errors: IDEMPOTENCY_KEY_REUSED, IDEMPOTENCY_KEY_IN_USE
  Writes KEYS[1], KEYS[2]; appends no event (a record is not domain state).
]]
--- @include "dg_now_ms"
--- @include "dg_error"
--- @include "dg_idem"
local idem = dg_idem(KEYS[1], KEYS[2])
local now = dg_now_ms()
local field, fp = ARGV[1], ARGV[2]
local rec = idem.read(field, now)
local decided = idem.decide(rec, fp)
if decided == 'replay' then
  return rec.status .. ' ' .. rec.body
elseif decided == 'IDEMPOTENCY_KEY_IN_USE' and rec.at + tonumber(ARGV[4]) <= now then
  idem.rerun(field, rec, now)
  return ''
elseif decided then
  return dg_error(decided, {})
end
idem.begin(field, fp, now, tonumber(ARGV[3]), nil)
return ''
