--[[
  Finish a request begun by idem_begin: store its answer (running -> done), or, with
  an empty status, drop its running record (it was refused before any change, so a
  repeat runs again).
  KEYS[1] idempotency hash    <prefix>:{pN}:idem
  ARGV[1] field "<tenant>:<key digest>"   ARGV[2] request fingerprint
  ARGV[3] status ('' drops the record)    ARGV[4] the answer's body, raw
  Returns "1" when a running record was stored or dropped, else "0".
  Errors: none
  Writes KEYS[1]; appends no event.
]]
--- @include "dg_idem"
local idem = dg_idem(KEYS[1], '')
if ARGV[3] == '' then
  idem.release(ARGV[1], ARGV[2])
  return '1'
end
return idem.store(ARGV[1], ARGV[3], ARGV[4]) and '1' or '0'
