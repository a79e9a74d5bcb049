--[[
  Restore one invite code from PostgreSQL: swap the staged users set into place and
  write the hash, in one atomic step, unless the code moved on in Redis meanwhile.
  The users are staged first (restore_members), so the code never answers redeems
  against a partial set.
  KEYS[1] invite hash         <prefix>:{pN}:t:<tenant>:invite:<code>
  KEYS[2] used-by set         <prefix>:{pN}:t:<tenant>:invite:<code>:users
  KEYS[3] staged users        <prefix>:{pN}:t:<tenant>:invite:<code>:users:restore
  ARGV[1] guard: '*' always; '-' only while the hash is absent; N: only while the
          hash is absent or its version is N
  ARGV[2] tenant id   ARGV[3] code   ARGV[4] max_uses   ARGV[5] used_count
  ARGV[6] active ('1' | '0')   ARGV[7] expires_at ms ('' none)   ARGV[8] created ms
  ARGV[9] version
  Returns {"restored": true} or {"restored": false, "version": current version}
  Errors: none
  Writes KEYS[1], KEYS[2]; deletes KEYS[3]; appends no event (PostgreSQL already holds it).
]]
local guard = ARGV[1]
if guard ~= '*' and redis.call('EXISTS', KEYS[1]) == 1 then
  local current = redis.call('HGET', KEYS[1], 'version')
  if guard == '-' or current ~= guard then
    redis.call('DEL', KEYS[3])
    return cjson.encode({restored = false, version = tonumber(current) or cjson.null})
  end
end
-- validated: now write
if redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('RENAME', KEYS[3], KEYS[2])
else
  redis.call('DEL', KEYS[2])
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'tenant_id', ARGV[2], 'code', ARGV[3], 'max_uses', ARGV[4],
  'used_count', ARGV[5], 'active', ARGV[6], 'created_ms', ARGV[8], 'version', ARGV[9])
if ARGV[7] ~= '' then redis.call('HSET', KEYS[1], 'expires_at_ms', ARGV[7]) end
return '{"restored":true}'
