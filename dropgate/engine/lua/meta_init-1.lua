--[[
  Record the installation's partition count P on first start; refuse a different P later.
  KEYS[1] meta hash           <prefix>:meta
  ARGV[1] partitions P
  Returns {"partitions": P as stored}
  Errors: CONFLICT
  Writes KEYS[1] once; appends no event (install metadata, not domain state).
]]
--- @include "dg_error"
local stored = redis.call('HGET', KEYS[1], 'partitions')
if stored == false then
  redis.call('HSET', KEYS[1], 'partitions', ARGV[1])
  stored = ARGV[1]
end
if stored ~= ARGV[1] then
  return dg_error('CONFLICT', {stored_partitions = tonumber(stored), configured_partitions = tonumber(ARGV[1])})
end
return cjson.encode({partitions = tonumber(stored)})
