--[[
  One step of the purchases of one offer, coalesced into one call: first the final
  responses of earlier requests (after the payment provider answered), then the holds
  of up to DROPGATE_PURCHASE_BATCH_SIZE (64) new requests. (One call for both: a
  second script call per purchase was a visible share of its CPU.)
  Finishing: attach the checkout session to each purchase: a pending one's goes to the
  purchase sessions hash, apart from its record (lib/dg_purchase_session.lua: one field
  written, no record read and rebuilt; no event while pending, the record takes it in
  when the purchase settles and that event carries it); a purchase already settled,
  canceled right after its 201, takes it into its record with one offer.purchase. For
  an answer other than a 201, store the response the client saw under its idempotency
  key (running -> done).
  A 201 is not stored: it is a function of the purchase record (id, session, URL, hold
  expiry), so a key whose running record names a purchase with a session and its URL
  attached is answered, and its repeat gets the record's fields to render the same bytes
  from (a stored 201 was a third of this script's time and 300 bytes per key for 24 h).
  A record restored from PostgreSQL keeps no URL: its key is recovered once stale.
  The idempotency records are lib/dg_idem.lua's, shared with every other route; the
  rate limit is lib/dg_gcra.lua's: this script itself keeps the holds and records.
  Holds: each request is decided on its own, in order, exactly as if it ran alone:
    1. idempotency key (when given): a live record with another fingerprint ->
       IDEMPOTENCY_KEY_REUSED; a finished one -> its stored response is replayed; one
       running whose purchase has its checkout session -> its 201 is replayed (the
       record's fields); one still running -> IDEMPOTENCY_KEY_IN_USE; one whose request
       stopped answering
       (running for ARGV[8] ms) after taking a hold that was not released -> "recover"
       (the caller re-derives that answer: the hold's checkout again, the provider's
       own idempotency key giving the same session); else it is marked running (24 h),
       with the purchase id when the hold is taken. None of these spends a token of
       the rate limit: a client's retry gets its answer, never 429;
    2. rate limit of its user, for new work only (GCRA, as ratelimit_take):
       RATE_LIMITED, nothing stored, the key not marked;
    3. the hold: quantity within max_per_order, and its amount (price x quantity)
       within one amount's most, 10^13 minor units (dropgate.money.MAX_MINOR: an offer
       made before POST /v1/offers held price x max_per_order to it could pass it, and
       an amount past it is not exact through cjson; QUANTITY_LIMIT with
       max_amount_minor), offer active/unarchived/unexpired,
       tenant subscription active, the user's units held or owned (KEYS[10]) plus
       quantity within max_per_user (when set: else USER_LIMIT), available >= quantity;
       then reserved += quantity, the user's units += quantity,
       the hold (expiry = now + hold ttl) enters the offer's holds, the offer the
       partition's expiry queue (once, at its earliest hold), the purchase record is
       written and one event appended.
  Expired holds of the offer are released first (lazy expiry).
  KEYS[1] partition log       <prefix>:{pN}:log
  KEYS[2] offer hash          <prefix>:{pN}:t:<tenant>:offer:<offer>
  KEYS[3] offer holds zset    <prefix>:{pN}:t:<tenant>:offer:<offer>:holds
  KEYS[4] hold expiry zset    <prefix>:{pN}:offer_holds ('<tenant>:<offer>' -> its earliest hold)
  KEYS[5] tenant hash         <prefix>:{pN}:tenant:<tenant>
  KEYS[6] purchases hash      <prefix>:{pN}:t:<tenant>:purchases
  KEYS[7] idempotency hash    <prefix>:{pN}:idem
  KEYS[8] idempotency expiry  <prefix>:{pN}:idem_exp
  KEYS[9] purchase rate limit <prefix>:{pN}:rl_purchase
  KEYS[10] offer users hash    <prefix>:{pN}:t:<tenant>:offer:<offer>:users
  KEYS[11] purchase sessions   <prefix>:{pN}:t:<tenant>:purchase_sessions
  ARGV[1] backlog bound   ARGV[2] tenant id   ARGV[3] offer id   ARGV[4] hold ttl ms
  ARGV[5] rate limit interval ms   ARGV[6] rate limit burst   ARGV[7] idempotency ttl ms
  ARGV[8] ms after which a running idempotency record's request counts as stopped
  ARGV[9] the requests, one flat msgpack array of 5 values a request: purchase id,
          user id, quantity, idempotency digest ('' none), request fingerprint (one
          argument, not 5 per request: packing arguments is the caller's main cost)
  ARGV[10] the responses to store, one flat msgpack array of 6 values a response:
          purchase id ('' none), checkout session id, checkout url, idempotency digest
          ('' none: a 201, or no key), response status, body length in bytes
  ARGV[11] their bodies, one after the other in the order of ARGV[10] (raw: a body is
          bytes as sent, and Redis's cmsgpack reads no msgpack bin; one argument)
  (msgpack, not JSON: cmsgpack copies a string by its length where cjson reads it a
  character at a time, and a flat array makes one table, not one per request; the two
  decodes cost a third of what they did: benchmarks.arg_decode)
  Returns a JSON array, one entry per request of ARGV[9]:
    {"ok": 1, "expires_ms": n, "price_minor": n, "currency": c, "name": s,
     "success_url": s, "cancel_url": s}  (the offer's, else the tenant's; '' none)
    {"replay": 1, "status": n, "body": "<the stored response>"}
    {"replay": 1, "status": 201, "purchase_id": s, "session_id": s, "checkout_url": s,
     "expires_ms": n}  (a 201, rendered again from these: nothing stored)
    {"recover": 1, "purchase_id": s, "quantity": n, "expires_ms": n, "price_minor": n,
     "currency": c, "name": s}
    {"err": CODE, "details": {...}}
  plus "idem": 1 when an idempotency record was marked running for it (the caller
  stores a refusal's response with a later call, in ARGV[10], before it is sent; a
  201's session is attached after it was sent, so an answer lost to a crash is
  recovered, never bought again).
  All codes are per-request entries; PERSISTENCE_LAGGING refuses every hold of the
  call when the backlog is at its bound (the responses of ARGV[10] are stored all the
  same: they append no event), and the holds past the room left when the call's own
  events would pass it (so the log never grows past the bound by holds).
  Errors: PERSISTENCE_LAGGING, RATE_LIMITED, IDEMPOTENCY_KEY_REUSED, IDEMPOTENCY_KEY_IN_USE, QUANTITY_LIMIT, NOT_FOUND, OFFER_UNAVAILABLE, SUBSCRIPTION_INACTIVE, USER_LIMIT, INSUFFICIENT_INVENTORY
  Writes KEYS[2..11]; appends offer.purchase per hold (and per expired hold, and per settled
  purchase given its session) to KEYS[1].
]]
--- @include "dg_now_ms"
--- @include "dg_emit"
--- @include "dg_emit_json"
--- @include "dg_backlog_full"
--- @include "dg_gcra"
--- @include "dg_tenant_inactive"
--- @include "dg_purchase_units"
--- @include "dg_offer_release"
--- @include "dg_offer_expire_holds"
--- @include "dg_offer_closed"
--- @include "dg_idem"
--- @include "dg_call_chunked"
--- @include "dg_hset_fields"
--- @include "dg_purchase_session"
local tenant, offer_id = ARGV[2], ARGV[3]
-- Buffered writes: every hash field and zset member the call writes is kept in the
-- script and written by one variadic HSET / ZADD per key (reads see them as if
-- written); one command per request and key was most of the call's Redis commands.
local idem = dg_idem(KEYS[7], KEYS[8], true)

-- the idempotency records the finishes touch (one HMGET), and the records of those no
-- longer pending
local finishes = cmsgpack.unpack(ARGV[10])
local fin_pids, fin_fields = {}, {}
for f = 1, #finishes, 6 do
  if finishes[f] ~= '' and finishes[f + 1] ~= '' then fin_pids[#fin_pids + 1] = finishes[f] end
  if finishes[f + 3] ~= '' then fin_fields[#fin_fields + 1] = tenant .. ':' .. finishes[f + 3] end
end
-- a purchase still pending (its hold among the offer's holds) takes its session in the
-- sessions hash, unread; only the others' records are read (settled meanwhile: the
-- record takes it in, with an event)
local fin_pending, fin_raw, fin_order, fin_dirty = {}, {}, {}, {}
if #fin_pids > 0 then
  local scores = dg_call_chunked('ZMSCORE', KEYS[3], fin_pids, 1000)
  local others = {}
  for i, pid in ipairs(fin_pids) do
    if scores[i] then fin_pending[pid] = true else others[#others + 1] = pid end
  end
  if #others > 0 then
    local got = dg_call_chunked('HMGET', KEYS[6], others, 1000)
    for i, pid in ipairs(others) do
      if fin_raw[pid] == nil then fin_raw[pid] = got[i] end
    end
  end
end
idem.load(fin_fields)

local sessions_args = {}
local body_at = 1
for f = 1, #finishes, 6 do
  local body = string.sub(ARGV[11], body_at, body_at + finishes[f + 5] - 1)
  body_at = body_at + finishes[f + 5]
  local pid, session, url, digest = finishes[f], finishes[f + 1], finishes[f + 2], finishes[f + 3]
  if pid ~= '' and session ~= '' and fin_pending[pid] then
    sessions_args[#sessions_args + 1] = pid
    sessions_args[#sessions_args + 1] = session .. '\n' .. url
  elseif pid ~= '' and session ~= '' then
    local raw = fin_raw[pid]
    if raw then
      if not string.find(raw, '"status":"pending"', 1, true) then
        -- settled before its session was attached (a cancel right after the 201): no
        -- later event would carry the session, so this one does
        local p = cjson.decode(raw)
        if p.session_id ~= session then
          p.session_id = session
          p.checkout_url = url
          p.version = p.version + 1
          p.updated_ms = dg_now_ms()
          raw = cjson.encode(p)
          dg_emit_json(KEYS[1], 'offer.purchase', 'purchase:' .. tenant .. ':' .. pid, p.version, raw)
        elseif p.checkout_url ~= url then
          -- restored from PostgreSQL, which keeps the session but not its URL: a repeat's 201
          -- is rendered from both (no event: the URL is not persisted)
          p.checkout_url = url
          raw = cjson.encode(p)
        end
      elseif string.find(raw, '"session_id"', 1, true) then
        local p = cjson.decode(raw)
        p.session_id = session
        p.checkout_url = url
        raw = cjson.encode(p)
      else  -- the record as the hold wrote it: append the two fields (no decode/encode)
        raw = string.sub(raw, 1, -2) .. ',"session_id":' .. cjson.encode(session)
          .. ',"checkout_url":' .. cjson.encode(url) .. '}'
      end
      if not fin_dirty[pid] then
        fin_dirty[pid] = true
        fin_order[#fin_order + 1] = pid
      end
      fin_raw[pid] = raw
    end
  end
  if digest ~= '' then
    idem.store(tenant .. ':' .. digest, finishes[f + 4], body)
  end
end
-- written before anything else reads them (lazy expiry reads purchase records)
if #sessions_args > 0 then dg_call_chunked('HSET', KEYS[11], sessions_args, 1000) end
dg_hset_fields(KEYS[6], fin_order, fin_raw)
idem.flush()
local requests = cmsgpack.unpack(ARGV[9])
local n_requests = #requests / 5  -- request i's values: requests[5 * i - 4 .. 5 * i]
if n_requests == 0 then return '[]' end
local full = dg_backlog_full(KEYS[1], ARGV[1])
if full then
  local refused = {}
  for i = 1, n_requests do refused[i] = {err = 'PERSISTENCE_LAGGING', details = full} end
  return cjson.encode(refused)
end
local now = dg_now_ms()
local hold_ttl, interval, burst = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local idem_ttl, idem_stale = tonumber(ARGV[7]), tonumber(ARGV[8])
local exists = redis.call('EXISTS', KEYS[2]) == 1
if exists then
  dg_offer_expire_holds(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[6], KEYS[10], KEYS[11], now, 1000,
    ARGV[1])
end
-- each hold appends one event: the backlog bound holds per hold, not only per call
local bound = tonumber(ARGV[1])
local room = bound - redis.call('XLEN', KEYS[1])
local o = redis.call('HMGET', KEYS[2], 'active', 'archived', 'expires_at_ms', 'max_per_order',
  'total', 'reserved', 'sold', 'price_minor', 'currency', 'name', 'version', 'max_per_user',
  'success_url', 'cancel_url')
-- where the checkout returns the buyer: the offer's, else the tenant's ('' = dropgate's pages)
local t_urls = redis.call('HMGET', KEYS[5], 'success_url', 'cancel_url')
local success_url, cancel_url = o[13] or t_urls[1] or '', o[14] or t_urls[2] or ''
local closed = exists and dg_offer_closed(offer_id, o, now)
local inactive = dg_tenant_inactive(KEYS[5], now)
local max_per_order = tonumber(o[4])
local max_per_user = tonumber(o[12])
local total, reserved, sold = tonumber(o[5]), tonumber(o[6]), tonumber(o[7])
local price = tonumber(o[8])
local max_amount = 10000000000000  -- one amount's most (dropgate.money.MAX_MINOR)
local expires = now + hold_ttl
local held = 0
-- the offer's reserved and version change once per call (the sum of the holds; one
-- version per hold, in order), not once per hold
local offer_version = tonumber(o[11]) or 0
local out = {}
-- What every hold of this call shares, encoded once: the tail of its purchase record
-- and its answer (a table per hold through cjson was a visible share of the call).
local record_tail = ''
local ok_answer = {}
if exists then
  record_tail = ',"tenant_id":' .. cjson.encode(tenant) .. ',"offer_id":' .. cjson.encode(offer_id)
    .. ',"status":"pending","units":"held","refunded_minor":0,"currency":' .. cjson.encode(o[9])
    .. string.format(',"hold_expires_ms":%d,"created_ms":%d,"updated_ms":%d,"version":1}', expires, now, now)
  ok_answer[false] = cjson.encode({ok = 1, expires_ms = expires, price_minor = price, currency = o[9],
    name = o[10], success_url = success_url, cancel_url = cancel_url})
  ok_answer[true] = string.sub(ok_answer[false], 1, -2) .. ',"idem":1}'
end

local function refuse(code, details)
  return {err = code, details = details or {}}
end
-- the holds' writes, buffered (see above): rate-limit values, purchase records, and
-- the members of the offer's holds
local rl_values, rl_order = {}, {}
local new_records, record_order = {}, {}
local holds_args = {}
-- and their reads: every request's rate-limit value and idempotency record, one HMGET
-- each (a value written by an earlier request of the call is read from the buffer)
-- (each request's fields, made once: the loop below uses them again)
local rl_stored, rl_fields, idem_fields, idem_field_of = {}, {}, {}, {}
for i = 1, n_requests do
  rl_fields[i] = tenant .. ':' .. requests[5 * i - 3]
  if requests[5 * i - 1] ~= '' then
    idem_field_of[i] = tenant .. ':' .. requests[5 * i - 1]
    idem_fields[#idem_fields + 1] = idem_field_of[i]
  end
end
if room > 0 then
  local got = dg_call_chunked('HMGET', KEYS[9], rl_fields, 1000)
  for i, field in ipairs(rl_fields) do rl_stored[field] = got[i] end
  idem.load(idem_fields)
end
-- each user's units held or owned (after the lazy expiry above gave some back), read
-- with one HMGET, kept up to date here per hold, written with one HSET
local units_of, units_order = {}, {}
if exists and room > 0 then
  local users = {}
  for i = 1, n_requests do users[i] = requests[5 * i - 3] end
  local got = dg_call_chunked('HMGET', KEYS[10], users, 1000)
  for i, user in ipairs(users) do units_of[user] = tonumber(got[i]) or 0 end
end
local function units(user)
  local n = units_of[user]
  if n == nil then
    n = tonumber(redis.call('HGET', KEYS[10], user)) or 0
    units_of[user] = n
  end
  return n
end
local units_dirty = {}
-- a taken hold's result: one table for all of them (its answer is ok_answer's string)
local held_ok = {ok = 1}

for i = 1, n_requests do
  local at = 5 * i - 4
  local pid, user, qty, digest, fp = requests[at], requests[at + 1], tonumber(requests[at + 2]),
    requests[at + 3], requests[at + 4]
  local result
  if room <= 0 then  -- refused before anything of it is taken or marked
    result = refuse('PERSISTENCE_LAGGING', {backlog = bound - room, bound = bound})
  end
  -- 1. idempotency: a repeat of a request answered (or still answering) spends no
  -- rate-limit token; only new work reaches the rate limit
  local idem_field = idem_field_of[i]
  local marked = false
  if result == nil and digest ~= '' then
    local rec = idem.read(idem_field, now)
    local lost, answered = nil, nil
    if rec and rec.st == 'running' then
      local stopped = rec.at + idem_stale <= now
      local p = nil
      if rec.pid and (rec.fp == fp or stopped) then
        local held_raw = new_records[rec.pid] or redis.call('HGET', KEYS[6], rec.pid)
        p = held_raw and dg_purchase_session(KEYS[11], cjson.decode(held_raw), false)
      end
      if p and rec.fp == fp and type(p.session_id) == 'string' and p.session_id ~= ''
          and type(p.checkout_url) == 'string' and p.checkout_url ~= '' then
        -- its 201 was sent, then its session attached: that is its answer (a record restored
        -- from PostgreSQL has no URL: recovered from the provider once stale, as if lost)
        answered = p
      elseif stopped then
        -- its request stopped (a crash). If it took a hold, its answer may have been
        -- sent (the session is attached after it): recover that answer, never buy twice;
        -- with no hold (or the hold released by a provider failure) it never answered
        lost = p
        if not lost or lost.status == 'released' then
          rec, lost = nil, nil
        end
      end
    end
    local decided = idem.decide(rec, fp)
    if decided == 'IDEMPOTENCY_KEY_REUSED' then
      result = refuse(decided, {})
    elseif answered then
      result = {replay = 1, status = 201, purchase_id = answered.purchase_id,
        session_id = answered.session_id, checkout_url = answered.checkout_url,
        expires_ms = answered.hold_expires_ms}
    elseif lost then
      -- this request recovers it; others meanwhile are told it runs
      idem.rerun(idem_field, rec, now)
      result = {recover = 1, purchase_id = lost.purchase_id, quantity = lost.quantity,
        expires_ms = lost.hold_expires_ms, price_minor = lost.amount_minor / lost.quantity,
        currency = lost.currency, name = o[10], success_url = success_url, cancel_url = cancel_url}
      marked = true
    elseif decided == 'replay' then
      result = {replay = 1, status = rec.status, body = rec.body}
    elseif decided then
      result = refuse(decided, {})
    else
      marked = true  -- written after the hold: with its purchase id when it was taken
    end
  end
  -- 2. rate limit (new work only): refused, the key is not marked
  if result == nil then
    local rl_field = rl_fields[i]
    local tat = rl_values[rl_field]
    if tat == nil then
      local stored = rl_stored[rl_field]
      if stored == nil then stored = redis.call('HGET', KEYS[9], rl_field) end
      tat = stored and tonumber(stored) or nil
    end
    local allowed, value = dg_gcra(tat, now, interval, burst)
    if not allowed then
      result = refuse('RATE_LIMITED', {retry_after_ms = value, scope = 'purchase'})
      marked = false
    else
      if rl_values[rl_field] == nil then rl_order[#rl_order + 1] = rl_field end
      rl_values[rl_field] = value
    end
  end
  -- 3. the hold
  if result == nil then
    if not exists then
      result = refuse('NOT_FOUND', {offer_id = offer_id})
    elseif qty < 1 or qty > max_per_order then
      result = refuse('QUANTITY_LIMIT', {quantity = qty, max_per_order = max_per_order})
    elseif price * qty > max_amount then
      result = refuse('QUANTITY_LIMIT', {quantity = qty, max_per_order = max_per_order,
        max_amount_minor = max_amount})
    elseif closed then
      result = refuse('OFFER_UNAVAILABLE', closed)
    elseif inactive then
      result = refuse('SUBSCRIPTION_INACTIVE', inactive)
    elseif max_per_user and units(user) + qty > max_per_user then
      result = refuse('USER_LIMIT', {user_id = user, max_per_user = max_per_user, requested = qty,
        held_or_owned = units(user)})
    elseif total - reserved - sold - held < qty then
      result = refuse('INSUFFICIENT_INVENTORY', {offer_id = offer_id, requested = qty,
        available = total - reserved - sold - held})
    else
      held = held + qty
      room = room - 1
      offer_version = offer_version + 1
      local record = '{"purchase_id":' .. cjson.encode(pid) .. ',"user_id":' .. cjson.encode(user)
        .. string.format(',"quantity":%d,"amount_minor":%d,"offer_version":%d', qty, price * qty,
          offer_version) .. record_tail
      if new_records[pid] == nil then record_order[#record_order + 1] = pid end
      new_records[pid] = record
      units_of[user] = units(user) + qty
      if not units_dirty[user] then
        units_dirty[user] = true
        units_order[#units_order + 1] = user
      end
      holds_args[#holds_args + 1] = expires
      holds_args[#holds_args + 1] = pid
      dg_emit_json(KEYS[1], 'offer.purchase', 'purchase:' .. tenant .. ':' .. pid, 1, record)
      result = held_ok
    end
  end
  if marked then
    if not result.recover then
      idem.begin(idem_field, fp, now, idem_ttl, result.ok and pid or nil)
    end
    if not result.ok then result.idem = 1 end  -- a held one's answer says so (ok_answer[true])
  end
  out[#out + 1] = result.ok and ok_answer[marked] or cjson.encode(result)
end
if held > 0 then
  redis.call('HINCRBY', KEYS[2], 'reserved', held)
  redis.call('HSET', KEYS[2], 'version', offer_version)
end
dg_hset_fields(KEYS[9], rl_order, rl_values)
dg_hset_fields(KEYS[10], units_order, units_of)
dg_hset_fields(KEYS[6], record_order, new_records)
if #holds_args > 0 then
  dg_call_chunked('ZADD', KEYS[3], holds_args, 1000)
  -- the partition's expiry queue names the offer once, at its earliest hold (LT: an
  -- earlier one already queued stays), not each hold: the sweeper releases an offer's
  -- due holds from its holds, and queues the offer again at the first one left
  redis.call('ZADD', KEYS[4], 'LT', expires, tenant .. ':' .. offer_id)
end
idem.flush()
return '[' .. table.concat(out, ',') .. ']'
