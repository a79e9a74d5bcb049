--[[
  Restore one entity from PostgreSQL (dropgate restore, reconcile --repair): swap its
  staged collections into place and write its hash, in one atomic step, unless the
  entity moved on in Redis meanwhile. The collections (an invite's users, a promo's
  uses and per-customer counts) are staged first (restore_members), so the entity
  never answers against a partial set. An entity with one collection passes its
  staging key as the second pair too (nothing is staged there: a no-op).
  KEYS[1] entity hash         e.g. <prefix>:{pN}:t:<tenant>:invite:<code>
  KEYS[2] collection 1        e.g. <prefix>:{pN}:t:<tenant>:invite:<code>:users
  KEYS[3] staged collection 1 e.g. <prefix>:{pN}:t:<tenant>:invite:<code>:users:restore
  KEYS[4] collection 2        e.g. <prefix>:{pN}:t:<tenant>:promo:<code>:customers
  KEYS[5] staged collection 2 e.g. <prefix>:{pN}:t:<tenant>:promo:<code>:customers:restore
  ARGV[1] guard: '*' always; '-' only while the hash is absent; N: only while the
          hash is absent or its version is N
  ARGV[2..] the hash's field, value pairs (its counters computed by the caller from
          the members it staged)
  Returns {"restored": true} or {"restored": false, "version": current version}
  Errors: none
  Writes KEYS[1], KEYS[2], KEYS[4]; deletes KEYS[3], KEYS[5]; appends no event
  (PostgreSQL already holds it).
]]
local guard = ARGV[1]
if guard ~= '*' and redis.call('EXISTS', KEYS[1]) == 1 then
  local current = redis.call('HGET', KEYS[1], 'version')
  if guard == '-' or current ~= guard then
    redis.call('DEL', KEYS[3], KEYS[5])
    return cjson.encode({restored = false, version = tonumber(current) or cjson.null})
  end
end
-- validated: now write
for i = 2, 4, 2 do
  if redis.call('EXISTS', KEYS[i + 1]) == 1 then
    redis.call('RENAME', KEYS[i + 1], KEYS[i])
  elseif KEYS[i] ~= KEYS[3] then
    redis.call('DEL', KEYS[i])
  end
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
return '{"restored":true}'
