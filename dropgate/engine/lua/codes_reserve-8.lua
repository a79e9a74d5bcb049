--[[
  Reserve codes of one type for one or more callers at once (concurrent requests for
  one pool are coalesced into one call): each caller gets up to its `count` available
  codes under its own fresh reserve_id until now + ttl (Redis time), in order. First,
  up to (total count + 64) expired reservations return to the available set (lazily,
  here: no cron), keeping their last reserve_id so the old holder may still assign
  them until someone else takes them. A low pool answers fewer codes, or none, never
  a code twice (SPOP is atomic here); a caller that asked for all or nothing
  (partial '0') gets nothing and `short` = the codes available instead.
  A request sent with an Idempotency-Key has its record decided in the same call
  (lib/dg_idem.lua's ask and settle): first, a repeat is answered what the first was
  (or IDEMPOTENCY_KEY_REUSED / _IN_USE) and takes nothing; else its answer is filed
  with its codes, atomically: no record is left running between them.
  KEYS[1] partition log       <prefix>:{pN}:log
  KEYS[2] campaign meta hash  <prefix>:{pN}:t:<tenant>:codes:<campaign>:meta
  KEYS[3] code records hash   <prefix>:{pN}:t:<tenant>:codes:<campaign>:records
  KEYS[4] available set       <prefix>:{pN}:t:<tenant>:codes:<campaign>:type:<type>:available
  KEYS[5] reserved zset       <prefix>:{pN}:t:<tenant>:codes:<campaign>:type:<type>:reserved
  KEYS[6] campaign definition <prefix>:{pN}:t:<tenant>:campaign:<campaign>
  KEYS[7] idempotency hash    <prefix>:{pN}:idem
  KEYS[8] idempotency expiry  <prefix>:{pN}:idem_exp
  ARGV[1] backlog bound   ARGV[2] tenant id   ARGV[3] campaign id   ARGV[4] type
  ARGV[5] reserve ids, newline-joined   ARGV[6] their counts, newline-joined
  ARGV[7] ttl ms ('': the campaign's `ttl_s` in KEYS[6], else ARGV[9])
  ARGV[8] partial flags, newline-joined, one per reserve id ('1' some, '0' all or nothing)
  ARGV[9] the default ttl ms
  ARGV[10] idempotency record ttl ms   ARGV[11] ms after which a running record's
           request counts as stopped
  ARGV[12] the requests' records, one JSON array (in ARGV[5]'s order) of [field,
           fingerprint] or 0 (no key); "" when no request of the call has a key
  Returns [{"reserve_id": id, "codes": [...], "reserved_at_ms": n, "expires_at_ms": n,
    "short": n (only when refused: the codes available)}, ...] one per reserve id, in order;
    a repeat's is the first request's with "replayed":1 added, or {"err": CODE, "details": {}}
  Errors: PERSISTENCE_LAGGING, IDEMPOTENCY_KEY_REUSED, IDEMPOTENCY_KEY_IN_USE
  (the first refuses the whole call before any change, the others one request)
  Writes KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[7], KEYS[8]; appends one codes.reserved to KEYS[1]
  when anything changed (codes taken or expired reservations returned).
]]
--- @include "dg_error"
--- @include "dg_now_ms"
--- @include "dg_emit"
--- @include "dg_backlog_full"
--- @include "dg_call_chunked"
--- @include "dg_code_unpack"
--- @include "dg_code_pack"
--- @include "dg_code_row"
--- @include "dg_json_strings"
--- @include "dg_idem"
local full = dg_backlog_full(KEYS[1], ARGV[1])
if full then return dg_error('PERSISTENCE_LAGGING', full) end
local now = dg_now_ms()
local ttl = tonumber(ARGV[7])
if not ttl then
  local campaign_ttl_s = tonumber(redis.call('HGET', KEYS[6], 'ttl_s'))
  ttl = campaign_ttl_s and campaign_ttl_s * 1000 or tonumber(ARGV[9])
end
local expires = now + ttl
local partial = {}
for f in string.gmatch(ARGV[8], '[^\n]+') do partial[#partial + 1] = f end
local rids, counts, total = {}, {}, 0
for rid in string.gmatch(ARGV[5], '[^\n]+') do rids[#rids + 1] = rid end
for n in string.gmatch(ARGV[6], '[^\n]+') do
  counts[#counts + 1] = tonumber(n)
  total = total + tonumber(n)
end
-- the keyed requests' records: a repeat is answered now and takes no code; a copy of
-- a request of this same call (`later`) takes none either, and is answered once the
-- first's answer is filed
local records, idem, replays, later = nil, nil, {}, {}
local idem_ttl, idem_stale = tonumber(ARGV[10]), tonumber(ARGV[11])
if ARGV[12] ~= '' then
  records = cjson.decode(ARGV[12])
  idem = dg_idem(KEYS[7], KEYS[8], true)
  local keyed = {}
  for _, r in ipairs(records) do
    if r ~= 0 then keyed[#keyed + 1] = r[1] end
  end
  idem.load(keyed)
  local fresh = {}
  for k = 1, #rids do
    local r = records[k]
    if r ~= 0 then
      if fresh[r[1]] then
        later[k] = true
      else
        replays[k] = idem.ask(r[1], r[2], now, idem_stale)
        fresh[r[1]] = not replays[k]
      end
      if later[k] or replays[k] then
        total = total - counts[k]
        counts[k] = 0
      end
    end
  end
end
local rows = {}
-- expired reservations go back to the pool (they already count as available)
local expired = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', now, 'LIMIT', 0, total + 64)
if #expired > 0 then
  local recs = dg_call_chunked('HMGET', KEYS[3], expired, 4000)
  local fields = {}
  local back = {}
  for i = 1, #expired do
    if recs[i] then
      local r = dg_code_unpack(recs[i])
      r.status = 'a'
      fields[#fields + 1] = expired[i]
      fields[#fields + 1] = dg_code_pack(r)
      back[#back + 1] = expired[i]
      rows[#rows + 1] = dg_code_row(expired[i], r)
    end
  end
  dg_call_chunked('ZREM', KEYS[5], expired, 4000)
  if #back > 0 then
    dg_call_chunked('HSET', KEYS[3], fields, 4000)
    dg_call_chunked('SADD', KEYS[4], back, 4000)
  end
end
-- Each reservation is decided in order, as if alone, on the pool's size: what it takes
-- (all or, partial '1', what is left; partial '0': all or nothing, `short` = the codes
-- left), then the codes of all of them leave the pool with one SPOP and their records
-- are read with one HMGET (two commands per reservation otherwise).
local left = total > 0 and redis.call('SCARD', KEYS[4]) or 0
local takes, shorts, spent, reserving = {}, {}, 0, 0
for k = 1, #rids do
  if replays[k] or later[k] then
    takes[k] = 0
  elseif partial[k] == '0' and left < counts[k] then
    shorts[k], takes[k] = left, 0
  else
    takes[k] = math.min(counts[k], left)
  end
  left = left - takes[k]
  spent = spent + takes[k]
  if not (replays[k] or later[k]) then reserving = reserving + 1 end
end
local pool = spent > 0 and redis.call('SPOP', KEYS[4], spent) or {}
-- each record keeps its upload mark (see dg_code_unpack): read them back in one call
local before = #pool > 0 and dg_call_chunked('HMGET', KEYS[3], pool, 4000) or {}
local fields, scored, answers, taken_total = {}, {}, {}, 0
local at = 0
-- one reservation's codes and answer (its codes are pool[at + 1 .. at + takes[k]])
local function reserve(k)
  local taken = {}
  local r = {type = ARGV[4], status = 'r', rid = rids[k], reserved_at = tostring(now),
             expires_at = tostring(expires), assigned_at = ''}
  local packed = dg_code_pack(r)
  for i = at + 1, at + takes[k] do
    local code = pool[i]
    taken[#taken + 1] = code
    fields[#fields + 1] = code
    fields[#fields + 1] = packed .. (before[i] and string.match(before[i], '#.*$') or '')
    scored[#scored + 1] = expires
    scored[#scored + 1] = code
    rows[#rows + 1] = dg_code_row(code, r)
  end
  at = at + takes[k]
  taken_total = taken_total + #taken
  local short = shorts[k]
  return '{"reserve_id":"' .. rids[k] .. '","codes":' .. dg_json_strings(taken) ..
    ',"reserved_at_ms":' .. now .. ',"expires_at_ms":' .. expires ..
    (short and (',"short":' .. short) or '') .. '}'
end
for k = 1, #rids do
  if replays[k] then
    answers[k] = replays[k]
  elseif later[k] then
    answers[k] = idem.ask(records[k][1], records[k][2], now, idem_stale)
      or dg_error('IDEMPOTENCY_KEY_IN_USE')  -- (never: the first's answer is always filed)
  else
    answers[k] = reserve(k)
    if records and records[k] ~= 0 then
      idem.settle(records[k][1], records[k][2], now, idem_ttl, answers[k])
    end
  end
end
if idem then idem.flush() end
if taken_total > 0 then
  dg_call_chunked('HSET', KEYS[3], fields, 4000)
  dg_call_chunked('ZADD', KEYS[5], scored, 4000)
end
if #rows > 0 then
  local version = redis.call('HINCRBY', KEYS[2], 'version', 1)
  dg_emit(KEYS[1], 'codes.reserved', 'codes:' .. ARGV[2] .. ':' .. ARGV[3], version, {
    tenant_id = ARGV[2], campaign_id = ARGV[3], type = ARGV[4], taken = taken_total,
    reservations = reserving, rows = rows, available = redis.call('SCARD', KEYS[4])})
end
return '[' .. table.concat(answers, ',') .. ']'
