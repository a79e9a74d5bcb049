--[[
  The sweeper's step for one offer: release its holds whose expiry has passed, then
  queue the offer again at its first hold left (none left, or the offer gone: dequeued).
  The queue names an offer once, at (or before) its earliest hold; entries of single
  holds ('<tenant>:<offer>:<purchase>', queued by an earlier release) are still read.
  KEYS[1] partition log       <prefix>:{pN}:log
  KEYS[2] offer hash          <prefix>:{pN}:t:<tenant>:offer:<offer>
  KEYS[3] offer holds zset    <prefix>:{pN}:t:<tenant>:offer:<offer>:holds
  KEYS[4] hold expiry zset    <prefix>:{pN}:offer_holds ('<tenant>:<offer>' -> its earliest hold)
  KEYS[5] purchases hash      <prefix>:{pN}:t:<tenant>:purchases
  KEYS[6] offer users hash    <prefix>:{pN}:t:<tenant>:offer:<offer>:users
  KEYS[7] purchase sessions   <prefix>:{pN}:t:<tenant>:purchase_sessions (lib/dg_purchase_session.lua)
  ARGV[1] backlog bound   ARGV[2] tenant id   ARGV[3] offer id   ARGV[4] most holds to release
  Returns {"released": n}
  Errors: PERSISTENCE_LAGGING
  Writes KEYS[2..7]; appends offer.purchase per released hold to KEYS[1]. Queue
  entries of a vanished offer or settled purchase are dropped.
]]
--- @include "dg_error"
--- @include "dg_now_ms"
--- @include "dg_emit"
--- @include "dg_backlog_full"
--- @include "dg_purchase_units"
--- @include "dg_offer_release"
--- @include "dg_offer_expire_holds"
local full = dg_backlog_full(KEYS[1], ARGV[1])
if full then return dg_error('PERSISTENCE_LAGGING', full) end
local now = dg_now_ms()
local released = 0
local exists = redis.call('EXISTS', KEYS[2]) == 1
if exists then
  released = dg_offer_expire_holds(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], now,
    tonumber(ARGV[4]), ARGV[1])
end
local member = ARGV[2] .. ':' .. ARGV[3]
local first = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
if first[2] and exists then
  redis.call('ZADD', KEYS[4], first[2], member)
else
  redis.call('ZREM', KEYS[4], member)
end
-- single holds' entries of this offer (an earlier release's) due but no longer held
local prefix = member .. ':'
for _, entry in ipairs(redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now, 'LIMIT', 0, 1000)) do
  if string.sub(entry, 1, #prefix) == prefix then
    local pid = string.sub(entry, #prefix + 1)
    if redis.call('ZSCORE', KEYS[3], pid) == false then redis.call('ZREM', KEYS[4], entry) end
  end
end
return cjson.encode({released = released})
