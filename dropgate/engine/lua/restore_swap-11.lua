--[[
  Restore one entity from PostgreSQL (dropgate restore, reconcile --repair): apply its
  staged collections and write its hash, in one atomic step, unless the entity moved
  on in Redis meanwhile. The collections (an invite's users, a promo's uses and
  per-customer counts, an offer's holds, purchase records and per-user units) are staged first
  (restore_members), so the entity never answers against a partial set.
  Each pair (collection, staged) is applied by its mode, one letter per pair in ARGV[2]:
    'r' replace: the staged key becomes the collection (nothing staged: deleted)
    'm' merge: the staged members are added into the collection (a hash shared by a
        tenant's entities, an event's set of offers)
    'x' merge, after removing from the collection the members of collection 1 as it
        was, each prefixed with ARGV[3] (the partition's hold-expiry queue: an offer is
        staged as '<tenant>:<offer>' at its earliest hold; an earlier release queued each
        hold as '<tenant>:<offer>:<purchase>', and those go)
    '-' unused (pass the first pair's staged key twice)
  KEYS[1] entity hash         e.g. <prefix>:{pN}:t:<tenant>:invite:<code>
  KEYS[2] collection 1        e.g. <prefix>:{pN}:t:<tenant>:invite:<code>:users
  KEYS[3] staged 1            e.g. <prefix>:{pN}:t:<tenant>:invite:<code>:users:restore
  KEYS[4] collection 2        e.g. <prefix>:{pN}:t:<tenant>:promo:<code>:customers
  KEYS[5] staged 2            e.g. <prefix>:{pN}:t:<tenant>:promo:<code>:customers:restore
  KEYS[6] collection 3        e.g. <prefix>:{pN}:offer_holds
  KEYS[7] staged 3            e.g. <prefix>:{pN}:t:<tenant>:offer:<offer>:holds:expiry
  KEYS[8] collection 4        e.g. <prefix>:{pN}:t:<tenant>:event:<event>:offers
  KEYS[9] staged 4            e.g. <prefix>:{pN}:t:<tenant>:offer:<offer>:event
  KEYS[10] collection 5       e.g. <prefix>:{pN}:t:<tenant>:offer:<offer>:users
  KEYS[11] staged 5           e.g. <prefix>:{pN}:t:<tenant>:offer:<offer>:users:restore
  ARGV[1] guard: '*' always; '-' only while the hash is absent; N: only while the
          hash is absent or its version is N
  ARGV[2] the pairs' modes (5 letters)   ARGV[3] the mirror prefix of mode 'x' ('' none)
  ARGV[4..] the hash's field, value pairs (its counters computed by the caller from
          the members it staged)
  Returns {"restored": true} or {"restored": false, "version": current version}
  Errors: none
  Writes KEYS[1] and the collections; deletes the staged keys; appends no event
  (PostgreSQL already holds it).
]]
local guard, modes = ARGV[1], ARGV[2]
if guard ~= '*' and redis.call('EXISTS', KEYS[1]) == 1 then
  local current = redis.call('HGET', KEYS[1], 'version')
  if guard == '-' or current ~= guard then
    for i = 1, 5 do
      if string.sub(modes, i, i) ~= '-' then redis.call('DEL', KEYS[2 * i + 1]) end
    end
    return cjson.encode({restored = false, version = tonumber(current) or cjson.null})
  end
end
-- validated: now write
local before = {}
if string.find(modes, 'x', 1, true) then before = redis.call('ZRANGE', KEYS[2], 0, -1) end
local add = {hash = 'HSET', zset = 'ZADD', set = 'SADD'}
for i = 1, 5 do
  local mode, target, staged = string.sub(modes, i, i), KEYS[2 * i], KEYS[2 * i + 1]
  if mode == 'x' then
    for _, member in ipairs(before) do redis.call('ZREM', target, ARGV[3] .. member) end
  end
  if mode == 'r' then
    if redis.call('EXISTS', staged) == 1 then
      redis.call('RENAME', staged, target)
    else
      redis.call('DEL', target)
    end
  elseif mode == 'm' or mode == 'x' then
    local kind = redis.call('TYPE', staged)['ok']
    local items
    if kind == 'hash' then
      items = redis.call('HGETALL', staged)
    elseif kind == 'zset' then
      items = {}
      local scored = redis.call('ZRANGE', staged, 0, -1, 'WITHSCORES')
      for j = 1, #scored, 2 do items[#items + 1] = scored[j + 1]; items[#items + 1] = scored[j] end
    elseif kind == 'set' then
      items = redis.call('SMEMBERS', staged)
    end
    if items and #items > 0 then
      for j = 1, #items, 7000 do
        redis.call(add[kind], target, unpack(items, j, math.min(j + 6999, #items)))
      end
    end
    redis.call('DEL', staged)
  end
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
return '{"restored":true}'
