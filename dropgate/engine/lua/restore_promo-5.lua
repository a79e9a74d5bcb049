--[[
  Restore one promo code from PostgreSQL: swap the staged use records and per-customer
  counts into place and write the hash, in one atomic step, unless the code moved on
  in Redis meanwhile. Uses and customers are staged first (restore_members, 'hash'),
  so the code never answers redeems against partial records.
  KEYS[1] promo hash          <prefix>:{pN}:t:<tenant>:promo:<code>
  KEYS[2] uses hash           <prefix>:{pN}:t:<tenant>:promo:<code>:uses
  KEYS[3] customers hash      <prefix>:{pN}:t:<tenant>:promo:<code>:customers
  KEYS[4] staged uses         <prefix>:{pN}:t:<tenant>:promo:<code>:uses:restore
  KEYS[5] staged customers    <prefix>:{pN}:t:<tenant>:promo:<code>:customers:restore
  ARGV[1] guard: '*' always; '-' only while the hash is absent; N: only while the
          hash is absent or its version is N
  ARGV[2..] the promo hash's field, value pairs (times_used and total_bonus_issued
          computed by the caller from the uses it staged)
  Returns {"restored": true} or {"restored": false, "version": current version}
  Errors: none
  Writes KEYS[1], KEYS[2], KEYS[3]; deletes KEYS[4], KEYS[5]; appends no event
  (PostgreSQL already holds it).
]]
local guard = ARGV[1]
if guard ~= '*' and redis.call('EXISTS', KEYS[1]) == 1 then
  local current = redis.call('HGET', KEYS[1], 'version')
  if guard == '-' or current ~= guard then
    redis.call('DEL', KEYS[4], KEYS[5])
    return cjson.encode({restored = false, version = tonumber(current) or cjson.null})
  end
end
-- validated: now write
for i = 2, 3 do
  if redis.call('EXISTS', KEYS[i + 2]) == 1 then
    redis.call('RENAME', KEYS[i + 2], KEYS[i])
  else
    redis.call('DEL', KEYS[i])
  end
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
return '{"restored":true}'
