--[[
  Set one balance of a tenant (a bal:<currency> field of the tenant hash) to what
  PostgreSQL's ledger rows give (reconcile --repair), only while it still holds the
  value the caller saw: a payment or withdrawal meanwhile makes it skip.
  KEYS[1] tenant hash         <prefix>:{pN}:tenant:<tenant>
  ARGV[1] field (bal:<currency>)   ARGV[2] the value seen ('' absent)   ARGV[3] new value
  Returns {"restored": true} or {"restored": false, "balance": current}
  Errors: none
  Writes KEYS[1]; appends no event (PostgreSQL already holds the rows).
]]
local current = redis.call('HGET', KEYS[1], ARGV[1])
if (current or '') ~= ARGV[2] then
  return cjson.encode({restored = false, balance = tonumber(current) or cjson.null})
end
-- validated: now write
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return '{"restored":true}'
