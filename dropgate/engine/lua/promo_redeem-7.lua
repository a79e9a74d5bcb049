--[[
  Redeem a promo code for one or more requests at once (concurrent requests for one
  code are coalesced into one call by the engine's Batcher), each on a purchase of
  `base` minor units. Each request is decided on its own, in order, exactly as if it
  ran alone (an earlier request of the same call counts):
    1. when asked, the customer's rate limit (GCRA, lib/dg_gcra.lua, as ratelimit_take):
       RATE_LIMITED, nothing else done; a token is spent whatever the redeem answers
       (the limit comes first, as it always did);
    2. the currency the base was parsed in, the base, the active flag, the window
       (Redis time), the customer's limit, max_uses, the use id;
    3. the bonus in exact integers (fixed: the amount; percent: rounded half up), then
       the use record, the customer's count, times_used, total_bonus_issued and its
       own promo.redeemed event: the counters always equal the sum over the use records.
  A request sent with an Idempotency-Key has its record decided in the same call
  (lib/dg_idem.lua's ask and settle): first of all, a repeat is answered what the
  first was (or IDEMPOTENCY_KEY_REUSED / _IN_USE) and spends nothing, not even its
  rate limit; else its answer is filed with its use, atomically: no record is left
  running between them (a refusal before any change, RATE_LIMITED, VALIDATION_ERROR
  or PERSISTENCE_LAGGING, is not filed: a repeat runs again).
  Reads and writes are buffered in the script (one HMGET per hash before the requests, one
  HSET per hash after them; each use still appends its own event).
  Rate limit entries whose time has passed mean nothing (the same as no entry): once
  the hash holds over 1024, each call drops a random sample of them.
  KEYS[1] partition log       <prefix>:{pN}:log
  KEYS[2] promo hash          <prefix>:{pN}:t:<tenant>:promo:<code>
  KEYS[3] uses hash           <prefix>:{pN}:t:<tenant>:promo:<code>:uses
  KEYS[4] customers hash      <prefix>:{pN}:t:<tenant>:promo:<code>:customers
  KEYS[5] rate limit hash     <prefix>:{pN}:t:<tenant>:rl:promo_redeem (customer -> GCRA TAT ms)
  KEYS[6] idempotency hash    <prefix>:{pN}:idem
  KEYS[7] idempotency expiry  <prefix>:{pN}:idem_exp
  ARGV[1] backlog bound   ARGV[2] tenant id   ARGV[3] code
  ARGV[4] rate limit interval ms   ARGV[5] rate limit burst
  ARGV[6] the requests, one JSON array of [customer id, base amount (minor units,
          1..10^13), currency the base was parsed in, use id (fresh, from the caller),
          mode, record] where mode 0 = redeem, 1 = rate limit then redeem, 2 = rate
          limit only, and record is the request's idempotency record [field,
          fingerprint], or 0 (no key)
  ARGV[7] idempotency record ttl ms   ARGV[8] ms after which a running record's request
          counts as stopped
  Returns a JSON array, one entry per request:
    {"use_id", "bonus_amount", "total_amount", "times_used", "total_bonus_issued",
      "base_amount", "currency"} (amounts as integers of minor units: what a repeat's
      answer is rendered from); {"limited": 1} for mode 2 allowed;
    {"err": CODE, "details": {...}} (that request alone was refused, nothing written
      for it; RATE_LIMITED details {"retry_after_ms": n});
    a repeat's is the first request's with "replayed":1 added
  Errors: RATE_LIMITED, NOT_FOUND, VALIDATION_ERROR, INACTIVE, NOT_STARTED, EXPIRED, CUSTOMER_LIMIT, EXHAUSTED, CONFLICT, PERSISTENCE_LAGGING, IDEMPOTENCY_KEY_REUSED, IDEMPOTENCY_KEY_IN_USE
  Writes KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]; appends promo.redeemed per use to KEYS[1].
]]
--- @include "dg_error"
--- @include "dg_now_ms"
--- @include "dg_emit_json"
--- @include "dg_call_chunked"
--- @include "dg_hset_fields"
--- @include "dg_backlog_room"
--- @include "dg_percent_of"
--- @include "dg_gcra"
--- @include "dg_idem"
local tenant, code = ARGV[2], ARGV[3]
local interval, burst = tonumber(ARGV[4]), tonumber(ARGV[5])
local requests = cjson.decode(ARGV[6])
local p = redis.call('HMGET', KEYS[2], 'active', 'currency', 'kind', 'amount', 'percent',
  'starts_at_ms', 'ends_at_ms', 'max_uses', 'per_customer_limit', 'times_used',
  'total_bonus_issued', 'version')
local now = dg_now_ms()
local entity = 'promo:' .. tenant .. ':' .. code
local limited = 0
-- What every use's event shares, encoded once per call (a table per use through cjson was
-- a visible share of the call).
local event_head = '{"tenant_id":' .. cjson.encode(tenant) .. ',"code":' .. cjson.encode(code)
  .. ',"currency":' .. cjson.encode(p[2] or '') .. ',"at_ms":' .. string.format('%d', now)

-- Buffered reads and writes: every customer's rate-limit value and count and every use id
-- of the call are read with one HMGET per hash before the requests are decided, kept here
-- as each request changes them (a later request reads what an earlier one wrote, as if it
-- ran alone after it), and written with one HSET per hash at the end: a command per
-- request and hash was most of the call's Redis commands.
local rl_of, count_of, use_taken = {}, {}, {}
local rl_dirty, rl_order, count_dirty, count_order, new_uses = {}, {}, {}, {}, {}
do
  local rl_fields, customers, use_ids = {}, {}, {}
  for _, r in ipairs(requests) do
    if r[5] ~= 0 then rl_fields[#rl_fields + 1] = r[1] end
    if r[5] ~= 2 then
      customers[#customers + 1] = r[1]
      use_ids[#use_ids + 1] = r[4]
    end
  end
  if #rl_fields > 0 then
    local got = dg_call_chunked('HMGET', KEYS[5], rl_fields, 1000)
    for i, c in ipairs(rl_fields) do rl_of[c] = got[i] and tonumber(got[i]) or false end
  end
  if #customers > 0 and p[1] then
    local got = dg_call_chunked('HMGET', KEYS[4], customers, 1000)
    for i, c in ipairs(customers) do count_of[c] = tonumber(got[i] or '0') end
    got = dg_call_chunked('HMGET', KEYS[3], use_ids, 1000)
    for i, u in ipairs(use_ids) do use_taken[u] = got[i] ~= false end
  end
end
-- the promo's counters and version change once per call (each use in order in between)
local used, total = tonumber(p[10]) or 0, tonumber(p[11]) or 0
local version = tonumber(p[12]) or 0
local wrote = false
-- the backlog's room, read once per call: each use appends one event
local take_room = dg_backlog_room(KEYS[1], ARGV[1])

local function limit(customer)
  limited = limited + 1
  local allowed, value = dg_gcra(rl_of[customer] or nil, now, interval, burst)
  if not allowed then return dg_error('RATE_LIMITED', {retry_after_ms = value}) end
  rl_of[customer] = value
  if not rl_dirty[customer] then
    rl_dirty[customer] = true
    rl_order[#rl_order + 1] = customer
  end
  return nil
end

local function redeem(customer, base_arg, currency, use_id)
  if p[1] == false then return dg_error('NOT_FOUND', {code = code}) end
  if p[2] ~= currency then
    return dg_error('VALIDATION_ERROR', {field = 'base_amount', currency = p[2]})
  end
  local base = tonumber(base_arg)
  if base == nil or base < 1 or base > 10000000000000 or base ~= math.floor(base) then
    return dg_error('VALIDATION_ERROR', {field = 'base_amount'})
  end
  if p[1] ~= '1' then return dg_error('INACTIVE', {code = code}) end
  local starts, ends = tonumber(p[6]), tonumber(p[7])
  if starts ~= nil and now < starts then
    return dg_error('NOT_STARTED', {code = code, starts_at_ms = starts})
  end
  if ends ~= nil and now >= ends then
    return dg_error('EXPIRED', {code = code, ends_at_ms = ends})
  end
  local per_customer = tonumber(p[9])
  local mine = count_of[customer]
  if mine >= per_customer then
    return dg_error('CUSTOMER_LIMIT', {code = code, customer_id = customer,
      per_customer_limit = per_customer})
  end
  local max_uses = tonumber(p[8])
  if max_uses ~= nil and used >= max_uses then
    return dg_error('EXHAUSTED', {code = code, max_uses = max_uses})
  end
  if use_taken[use_id] then
    return dg_error('CONFLICT', {use_id = use_id, reason = 'use id taken'})
  end
  local bonus
  if p[3] == 'fixed' then
    bonus = tonumber(p[4])
  else
    bonus = dg_percent_of(base, tonumber(p[5]))
  end
  -- keep the running total exact in a double (and in every reader's int64)
  if total + bonus > 9007199254740991 then
    return dg_error('CONFLICT', {code = code, reason = 'total_bonus_issued out of range'})
  end
  local full = take_room()
  if full then return dg_error('PERSISTENCE_LAGGING', full) end
  -- validated: now write (buffered, but for the event)
  local bonus_s, base_s = string.format('%d', bonus), string.format('%d', base)
  new_uses[#new_uses + 1] = use_id
  new_uses[#new_uses + 1] = '{"customer_id":' .. cjson.encode(customer)
    .. ',"base_amount":' .. base_s .. ',"bonus_amount":' .. bonus_s
    .. ',"at_ms":' .. string.format('%d', now) .. '}'
  use_taken[use_id] = true
  if not count_dirty[customer] then
    count_dirty[customer] = true
    count_order[#count_order + 1] = customer
  end
  count_of[customer] = mine + 1
  used, total, version = used + 1, total + bonus, version + 1
  wrote = true
  dg_emit_json(KEYS[1], 'promo.redeemed', entity, version, event_head
    .. ',"use_id":' .. cjson.encode(use_id) .. ',"customer_id":' .. cjson.encode(customer)
    .. ',"base_amount":' .. base_s .. ',"bonus_amount":' .. bonus_s .. '}')
  return '{"use_id":' .. cjson.encode(use_id) .. ',"bonus_amount":' .. bonus_s
    .. ',"total_amount":' .. string.format('%d', base + bonus) .. ',"times_used":'
    .. string.format('%d', used) .. ',"total_bonus_issued":' .. string.format('%d', total)
    .. ',"base_amount":' .. base_s .. ',"currency":' .. cjson.encode(p[2]) .. '}'
end

local function decide(r)
  local mode = r[5]
  local refused = nil
  if mode ~= 0 then refused = limit(r[1]) end
  if refused then return refused end
  if mode == 2 then return '{"limited":1}' end
  return redeem(r[1], r[2], r[3], r[4])
end

local answers = {}
local records, keyed = {}, false
for i, r in ipairs(requests) do
  records[i] = r[6]
  keyed = keyed or r[6] ~= 0
end
if not keyed then
  for i = 1, #requests do answers[i] = decide(requests[i]) end
else
  answers = dg_idem(KEYS[6], KEYS[7], true).each(records, #requests,
    function(i) return decide(requests[i]) end, now, tonumber(ARGV[7]), tonumber(ARGV[8]))
end
-- the buffered writes, one command per hash
dg_hset_fields(KEYS[5], rl_order, rl_of, '%.17g')
if wrote then
  dg_call_chunked('HSET', KEYS[3], new_uses, 1000)
  dg_hset_fields(KEYS[4], count_order, count_of, '%d')
  redis.call('HSET', KEYS[2], 'times_used', string.format('%d', used),
    'total_bonus_issued', string.format('%d', total), 'version', string.format('%d', version))
end
-- forget rate limit entries whose time has passed (they decide nothing any more)
if limited > 0 and redis.call('HLEN', KEYS[5]) > 1024 then
  local sample = redis.call('HRANDFIELD', KEYS[5], 2 * limited + 16, 'WITHVALUES')
  local stale = {}
  for i = 1, #sample, 2 do
    if tonumber(sample[i + 1]) < now then stale[#stale + 1] = sample[i] end
  end
  if #stale > 0 then redis.call('HDEL', KEYS[5], unpack(stale)) end
end
return '[' .. table.concat(answers, ',') .. ']'
