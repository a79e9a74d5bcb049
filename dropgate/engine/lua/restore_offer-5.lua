--[[
  Restore one offer from PostgreSQL: its hash, its purchase records, and its holds
  (the pending purchases, scored by their absolute expiry ms, in the offer's holds and
  in the partition's expiry queue, so they keep their expiry), in one atomic step,
  unless the offer moved on in Redis meanwhile. A hold already past its expiry is
  restored as it is: the sweeper or the next read releases it (with its event).
  KEYS[1] offer hash          <prefix>:{pN}:t:<tenant>:offer:<offer>
  KEYS[2] offer holds zset    <prefix>:{pN}:t:<tenant>:offer:<offer>:holds
  KEYS[3] hold expiry zset    <prefix>:{pN}:offer_holds
  KEYS[4] purchases hash      <prefix>:{pN}:t:<tenant>:purchases
  KEYS[5] event's offers set  <prefix>:{pN}:t:<tenant>:event:<event>:offers
  ARGV[1] guard: '*' always; '-' only while the hash is absent; N: only while the
          hash is absent or its version is N
  ARGV[2] tenant id   ARGV[3] offer id
  ARGV[4] the purchases: one JSON array of purchase records (as the scripts store them)
  ARGV[5..] the offer hash's field, value pairs
  Returns {"restored": true} or {"restored": false, "version": current version}
  Errors: none
  Writes KEYS[1..5]; appends no event (PostgreSQL already holds it).
]]
local guard = ARGV[1]
if guard ~= '*' and redis.call('EXISTS', KEYS[1]) == 1 then
  local current = redis.call('HGET', KEYS[1], 'version')
  if guard == '-' or current ~= guard then
    return cjson.encode({restored = false, version = tonumber(current) or cjson.null})
  end
end
local purchases = cjson.decode(ARGV[4])
-- validated: now write
local prefix = ARGV[2] .. ':' .. ARGV[3] .. ':'
for _, pid in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  redis.call('ZREM', KEYS[3], prefix .. pid)
end
redis.call('DEL', KEYS[2])
for _, p in ipairs(purchases) do
  redis.call('HSET', KEYS[4], p.purchase_id, cjson.encode(p))
  if p.status == 'pending' then
    redis.call('ZADD', KEYS[2], p.hold_expires_ms, p.purchase_id)
    redis.call('ZADD', KEYS[3], p.hold_expires_ms, prefix .. p.purchase_id)
  end
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 5))
redis.call('SADD', KEYS[5], ARGV[3])
return '{"restored":true}'
