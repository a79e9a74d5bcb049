--[[
  One revocation poll of one serving process on one partition: record the version the
  process has applied (before this call was sent) with Redis's clock, and read the
  current version for it to apply next. ``apikey_revoke_wait`` reads the records.
  KEYS[1] revocation version  <prefix>:{pN}:apikeys:revocations
  KEYS[2] poller records      <prefix>:{pN}:apikeys:pollers (field: process id)
  ARGV[1] process id   ARGV[2] version applied (-1: none yet)   ARGV[3] records ttl ms
  ARGV[4] the process's lease ms (it trusts its view for half of it)
  Returns the current version (a JSON number)
  Errors: none
  Writes KEYS[2] (field ARGV[1] = "<applied version> <redis ms> <lease ms>", ttl ARGV[3]).
]]
--- @include "dg_now_ms"
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2] .. ' ' .. dg_now_ms() .. ' ' .. ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return tostring(tonumber(redis.call('GET', KEYS[1]) or '0'))
