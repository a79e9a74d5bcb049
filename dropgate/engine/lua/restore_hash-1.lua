--[[
  Restore one entity hash from PostgreSQL (dropgate restore, reconcile --repair), unless
  the entity moved on in Redis since the caller read it.
  KEYS[1] entity hash         e.g. <prefix>:{pN}:tenant:<tenant>
  ARGV[1] guard: '*' always; '-' only while the hash is absent; N: only while the
          hash is absent or its 'version' field is N
  ARGV[2] mode: 'replace' (the hash becomes exactly the pairs; no pairs deletes it) or
          'merge' (set the pairs, delete fields given as '')
  ARGV[3] expire at, ms since the epoch ('' none): absolute, so a hold restored from
          PostgreSQL keeps its expiry
  ARGV[4..] field, value pairs
  Returns {"restored": true} or {"restored": false, "version": current version}
  Errors: none
  Writes KEYS[1]; appends no event (PostgreSQL already holds this state).
]]
local guard = ARGV[1]
if guard ~= '*' then
  local exists = redis.call('EXISTS', KEYS[1]) == 1
  if exists then
    local current = redis.call('HGET', KEYS[1], 'version')
    if guard == '-' or current ~= guard then
      return cjson.encode({restored = false, version = tonumber(current) or cjson.null})
    end
  end
end
-- validated: now write
if ARGV[2] == 'replace' then redis.call('DEL', KEYS[1]) end
for i = 4, #ARGV, 2 do
  if ARGV[2] == 'merge' and ARGV[i + 1] == '' then
    redis.call('HDEL', KEYS[1], ARGV[i])
  else
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
if ARGV[3] ~= '' and redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('PEXPIREAT', KEYS[1], ARGV[3])
end
return '{"restored":true}'
