--[[
  Stage members restored from PostgreSQL into a staging key, one bounded chunk per
  call; a domain's restore script then swaps the staging key into place atomically
  (RENAME) together with the entity's hash, so a large set is never half visible.
  KEYS[1] staging set or sorted set   <the target key>:restore (same hash tag)
  ARGV[1] '1' starts afresh (deletes what was staged), '0' adds
  ARGV[2] 'set' | 'zset' | 'hash'
  ARGV[3..] members (set), score, member pairs (zset: scores are absolute ms,
          e.g. a reservation's expiry, so restored entries keep their expiry), or
          field, value pairs (hash: e.g. a promo's use records)
  Returns {"staged": size of the staging key}
  Errors: none
  Writes KEYS[1]; appends no event (PostgreSQL already holds this state).
]]
if ARGV[1] == '1' then redis.call('DEL', KEYS[1]) end
if #ARGV >= 3 then
  local cmd = 'SADD'
  if ARGV[2] == 'zset' then cmd = 'ZADD' elseif ARGV[2] == 'hash' then cmd = 'HSET' end
  local step = 7000
  for i = 3, #ARGV, step do
    redis.call(cmd, KEYS[1], unpack(ARGV, i, math.min(i + step - 1, #ARGV)))
  end
end
local size
if ARGV[2] == 'zset' then
  size = redis.call('ZCARD', KEYS[1])
elseif ARGV[2] == 'hash' then
  size = redis.call('HLEN', KEYS[1])
else
  size = redis.call('SCARD', KEYS[1])
end
return '{"staged":' .. size .. '}'
