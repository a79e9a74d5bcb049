--[[
  Restore one campaign's code pool from PostgreSQL: swap the staged records hash and
  every type's staged available set, reserved zset (scores: absolute expiry ms, so
  reservations keep their expiry) and assigned set, and the staged assigned-to hash
  (code -> the user it was assigned to), into place and write the meta hash,
  in one atomic step, unless the campaign moved on in Redis meanwhile. Everything is
  staged first (restore_members), so no redeem sees a partial pool. The meta hash's
  `uploads` counter (codes_upload numbers each upload of several batches with it) is
  restored too, never below what Redis still holds: a new upload must not take the
  number of one PostgreSQL still records (a staged upload left pending, or the rows a
  discard of the same number would delete).
  The per-type keys are not in KEYS (a campaign has any number of types): they are
  derived from KEYS[2]'s name exactly as keys.py names them (<campaign base>:type:<type>:
  available|reserved|assigned, <campaign base>:assigned_to, and each with ':restore' for
  its staging key), so they share KEYS[2]'s hash tag and slot.
  KEYS[1] campaign meta hash  <prefix>:{pN}:t:<tenant>:codes:<campaign>:meta
  KEYS[2] code records hash   <prefix>:{pN}:t:<tenant>:codes:<campaign>:records
  KEYS[3] staged records      <prefix>:{pN}:t:<tenant>:codes:<campaign>:records:restore
  ARGV[1] guard: '*' always; '-' only while the meta hash is absent; N: only while
          it is absent or its version is N
  ARGV[2] the campaign's version   ARGV[3] its created_ms ('' unknown)
  ARGV[4] the highest upload number PostgreSQL records for it (0: none)   ARGV[5..] its types
  Returns {"restored": true} or {"restored": false, "version": current version}
  Errors: none
  Writes KEYS[1], KEYS[2], the types' sets and the assigned-to hash; deletes the staging keys; appends no
  event (PostgreSQL already holds it).
]]
local base = string.sub(KEYS[2], 1, #KEYS[2] - #':records')
local function staged_keys()
  local out = {KEYS[3], base .. ':assigned_to:restore'}
  for i = 5, #ARGV do
    for _, s in ipairs({'available', 'reserved', 'assigned'}) do
      out[#out + 1] = base .. ':type:' .. ARGV[i] .. ':' .. s .. ':restore'
    end
  end
  return out
end
local guard = ARGV[1]
if guard ~= '*' and redis.call('EXISTS', KEYS[1]) == 1 then
  local current = redis.call('HGET', KEYS[1], 'version')
  if guard == '-' or current ~= guard then
    redis.call('DEL', unpack(staged_keys()))
    return cjson.encode({restored = false, version = tonumber(current) or cjson.null})
  end
end
-- validated: now write
local function swap(staging, target)
  if redis.call('EXISTS', staging) == 1 then
    redis.call('RENAME', staging, target)
  else
    redis.call('DEL', target)
  end
end
-- types Redis knew and PostgreSQL does not: their sets go too
local known = redis.call('HKEYS', KEYS[1])
local restored = {}
for i = 5, #ARGV do restored[ARGV[i]] = true end
for _, f in ipairs(known) do
  local t = string.match(f, '^t:(.*)$')
  if t and not restored[t] then
    for _, s in ipairs({'available', 'reserved', 'assigned'}) do
      redis.call('DEL', base .. ':type:' .. t .. ':' .. s)
    end
  end
end
swap(KEYS[3], KEYS[2])
swap(base .. ':assigned_to:restore', base .. ':assigned_to')
local uploads = math.max(tonumber(redis.call('HGET', KEYS[1], 'uploads')) or 0, tonumber(ARGV[4]) or 0)
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'version', ARGV[2])
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'created_ms', ARGV[3]) end
if uploads > 0 then redis.call('HSET', KEYS[1], 'uploads', uploads) end
for i = 5, #ARGV do
  for _, s in ipairs({'available', 'reserved', 'assigned'}) do
    local target = base .. ':type:' .. ARGV[i] .. ':' .. s
    swap(target .. ':restore', target)
  end
  redis.call('HSET', KEYS[1], 't:' .. ARGV[i], 1)
end
return '{"restored":true}'
