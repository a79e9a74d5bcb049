--[[
  How many serving processes revoke still waits for on one partition: those whose
  record (apikey_poll) claims a version below ARGV[1] and is younger than the lease
  (the longer of the record's own and ARGV[2]: a process configured with a longer
  lease trusts its view longer).
  Records older than the lease are deleted: their process no longer trusts its cached
  view (it reads the version per request) or is gone.
  KEYS[1] poller records      <prefix>:{pN}:apikeys:pollers
  ARGV[1] version revoke made   ARGV[2] lease ms
  Returns the number of processes still behind (a JSON number)
  Errors: none
  Deletes stale fields of KEYS[1].
]]
--- @include "dg_now_ms"
local now = dg_now_ms()
local want = tonumber(ARGV[1])
local lease = tonumber(ARGV[2])
local flat = redis.call('HGETALL', KEYS[1])
local behind = 0
for i = 1, #flat, 2 do
  local version, ms, own = string.match(flat[i + 1], '^(-?%d+) (%d+) (%d+)$')
  if version == nil or now - tonumber(ms) > math.max(lease, tonumber(own)) then
    redis.call('HDEL', KEYS[1], flat[i])
  elseif tonumber(version) < want then
    behind = behind + 1
  end
end
return tostring(behind)
