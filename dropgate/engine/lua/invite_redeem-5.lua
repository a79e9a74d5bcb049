--[[
  Redeem an invite code for one or more users at once (concurrent requests for one
  code are coalesced into one call by the engine's Batcher). Each request is decided
  on its own, in order, exactly as if it ran alone: active, not expired (Redis time),
  user not in the used set (an earlier request of the same call counts), max_uses not
  reached (0 = unlimited), backlog below its bound; then add the user, bump the count
  and append its own invite.redeemed event. Reads and writes are buffered in the script:
  one SMISMEMBER before the requests, one SADD and one HSET after them.
  A request sent with an Idempotency-Key has its record decided in the same call
  (lib/dg_idem.lua's ask and settle): first, a repeat is answered what the first was
  (or IDEMPOTENCY_KEY_REUSED / _IN_USE) and changes nothing; else its answer is filed
  with its effect, atomically: no record is left running between them.
  KEYS[1] partition log       <prefix>:{pN}:log
  KEYS[2] invite hash         <prefix>:{pN}:t:<tenant>:invite:<code>
  KEYS[3] used-by set         <prefix>:{pN}:t:<tenant>:invite:<code>:users
  KEYS[4] idempotency hash    <prefix>:{pN}:idem
  KEYS[5] idempotency expiry  <prefix>:{pN}:idem_exp
  ARGV[1] backlog bound   ARGV[2] tenant id   ARGV[3] code
  ARGV[4] the user ids, one JSON array of strings (one per request, in order)
  ARGV[5] idempotency record ttl ms   ARGV[6] ms after which a running record's request
          counts as stopped
  ARGV[7] the requests' records, one JSON array (in ARGV[4]'s order) of [field,
          fingerprint] or 0 (no key); "" when no request of the call has a key
  Returns a JSON array, one entry per user id: {"used_count": n} or
    {"err": CODE, "details": {...}} (that request alone was refused, nothing written for it);
    a repeat's is the first request's with "replayed":1 added
  Errors: NOT_FOUND, INACTIVE, EXPIRED, ALREADY_USED, EXHAUSTED, PERSISTENCE_LAGGING, IDEMPOTENCY_KEY_REUSED, IDEMPOTENCY_KEY_IN_USE
  Writes KEYS[2], KEYS[3], KEYS[4], KEYS[5]; appends invite.redeemed per use to KEYS[1].
]]
--- @include "dg_error"
--- @include "dg_now_ms"
--- @include "dg_emit_json"
--- @include "dg_call_chunked"
--- @include "dg_backlog_room"
--- @include "dg_idem"
local tenant, code = ARGV[2], ARGV[3]
local users = cjson.decode(ARGV[4])
local answers = {}
local inv = redis.call('HMGET', KEYS[2], 'active', 'expires_at_ms', 'max_uses', 'used_count', 'version')
local now = dg_now_ms()
local entity = 'invite:' .. tenant .. ':' .. code
-- Buffered: the users already in the used set are read with one SMISMEMBER before the
-- requests are decided, the new ones kept here (a later request of the call sees an
-- earlier one's use) and added with one SADD at the end, the count and version written
-- once; a command per request and key was most of the call's Redis commands. Each use
-- still appends its own event, and the backlog's room is read once and counted down.
local used_by = {}
if inv[1] and #users > 0 then
  local got = dg_call_chunked('SMISMEMBER', KEYS[3], users, 1000)
  for i, user in ipairs(users) do used_by[user] = got[i] == 1 end
end
local used, version = tonumber(inv[4]) or 0, tonumber(inv[5]) or 0
local new_users = {}
local take_room = dg_backlog_room(KEYS[1], ARGV[1])
-- what every use's event shares, encoded once per call
local event_head = '{"tenant_id":' .. cjson.encode(tenant) .. ',"code":' .. cjson.encode(code)
  .. ',"at_ms":' .. string.format('%d', now) .. ',"user_id":'
local function decide(user)
  if inv[1] == false then return dg_error('NOT_FOUND', {code = code}) end
  if inv[1] ~= '1' then return dg_error('INACTIVE', {code = code}) end
  local expires = tonumber(inv[2])
  if expires ~= nil and now >= expires then return dg_error('EXPIRED', {code = code}) end
  if used_by[user] then
    return dg_error('ALREADY_USED', {code = code, user_id = user})
  end
  local max_uses = tonumber(inv[3])
  if max_uses > 0 and used >= max_uses then
    return dg_error('EXHAUSTED', {code = code, max_uses = max_uses})
  end
  local full = take_room()
  if full then return dg_error('PERSISTENCE_LAGGING', full) end
  -- validated: now write (buffered, but for the event)
  used_by[user] = true
  new_users[#new_users + 1] = user
  used, version = used + 1, version + 1
  local used_s = string.format('%d', used)
  dg_emit_json(KEYS[1], 'invite.redeemed', entity, version,
    event_head .. cjson.encode(user) .. ',"used_count":' .. used_s .. '}')
  return '{"used_count":' .. used_s .. '}'
end
if ARGV[7] == '' then
  for i = 1, #users do answers[i] = decide(users[i]) end
else
  answers = dg_idem(KEYS[4], KEYS[5], true).each(cjson.decode(ARGV[7]), #users,
    function(i) return decide(users[i]) end, now, tonumber(ARGV[5]), tonumber(ARGV[6]))
end
if #new_users > 0 then
  dg_call_chunked('SADD', KEYS[3], new_users, 1000)
  redis.call('HSET', KEYS[2], 'used_count', string.format('%d', used), 'version', string.format('%d', version),
    'last_used_ms', now)
end
return '[' .. table.concat(answers, ',') .. ']'
