--- @include "dg_call_chunked"
--- @include "dg_error"
-- Idempotency records (engine/idempotency.py), one per request key: a field
-- "<tenant>:<key digest>" of the partition's idempotency hash, in plain text, not
-- JSON (a body stored inside JSON was escaped on the way in and decoded on every read):
--   running: "R <at ms> <expiry ms> <fingerprint> <purchase id or ->"
--   done:    "D <at ms> <expiry ms> <fingerprint> <status> <body>"
-- dg_idem(hash, expiry[, buffered]) gives the operations on the records of `hash`
-- (`expiry`: the zset by expiry ms that offer_housekeep drops them by, each member the
-- fields filed with one expiry, '\n'-separated: a buffered call files its requests' as
-- one member, not one each; each record says its own expiry, which housekeeping checks):
--   read(field, now) -> nil (none, or past its expiry) or
--                       {st = 'running'|'done', at, exp, fp, pid, status, body}
--   decide(rec, fp)  -> nil (no record: run the request), 'IDEMPOTENCY_KEY_REUSED'
--                       (another request's key), 'IDEMPOTENCY_KEY_IN_USE' (running)
--                       or 'replay' (done: answer rec.status and rec.body)
--   begin(field, fp, now, ttl, pid)  mark a new request running for ttl ms
--   rerun(field, rec, now)           mark a stopped request's record running again
--                                    (its taker is now `now`; expiry and purchase kept)
--   store(field, status, body)       running -> done (at, expiry, fingerprint kept as
--                                    they are: no parse); false when it is not running
--   release(field, fp)               drop a running record of `fp` (the request was
--                                    refused before any change: a repeat runs again);
--                                    false when there was none
-- and, for a script that decides its requests' effects and their records in the same
-- call (invite_redeem, promo_redeem, codes_reserve: no record is ever left running
-- between the effect and its answer, and no call is paid for it):
--   ask(field, fp, now, stale) -> nil (run the request: no record, or a running one
--                       whose request has run for `stale` ms, a crash: taken over) or
--                       its answer now: the stored one with "replayed":1 added (an
--                       HTTP answer stored by idem_batch before the route's script kept
--                       its own: {"replayed":1,"status":S,"body":<its bytes>}), or an
--                       IDEMPOTENCY_KEY_REUSED / _IN_USE error
--   settle(field, fp, now, ttl, answer)  file `answer`, the script's own JSON answer to
--                       the request, as its record ("D ... 0 <answer>": status 0, the
--                       route renders it as it renders a fresh one); a refusal that
--                       another try may not repeat (PERSISTENCE_LAGGING, RATE_LIMITED;
--                       NOT_FOUND: the code may be created next; VALIDATION_ERROR, which
--                       the route may retry itself: a promo's currency) changes nothing
--                       and files none, so a repeat runs again
--   each(records, n, decide, now, ttl, stale) -> the answers of requests 1..n, in order:
--                       records[i] is request i's [field, fingerprint] (0: no key), asked
--                       first (a repeat is answered without deciding it), else
--                       decide(i) and settled; the records are loaded first and flushed
--                       after (a buffered idem's whole use by a redemption script)
-- `buffered` (a script deciding many requests in one call): the writes are kept in the
-- script, and read back by the operations above exactly as if written, until flush()
-- writes them all with one HSET and one ZADD (two calls per request otherwise, the
-- larger share of a batched purchase's Redis commands); load(fields) reads many
-- records with one HMGET ahead of their operations. A buffered script must flush()
-- before it returns. Unbuffered, every operation reads and writes Redis at once.
local function dg_idem(hash, expiry, buffered)
  local idem = {}
  local cache, dirty, order = {}, {}, {}  -- cache: field -> raw, false = none
  local expiring, expiries = {}, {}  -- expiry ms -> its fields; the expiries in order
  local function get(field)
    if not buffered then return redis.call('HGET', hash, field) end
    local raw = cache[field]
    if raw == nil then
      raw = redis.call('HGET', hash, field)
      cache[field] = raw
    end
    return raw or nil
  end
  local function set(field, raw)
    if not buffered then
      redis.call('HSET', hash, field, raw)
      return
    end
    cache[field] = raw
    if not dirty[field] then
      dirty[field] = true
      order[#order + 1] = field
    end
  end
  -- a batch marks its requests running at one `at` and expiry: their common head is
  -- formatted once, not per request
  local function expire_at(field, at)
    if buffered then
      local fields = expiring[at]
      if not fields then
        fields = {}
        expiring[at] = fields
        expiries[#expiries + 1] = at
      end
      fields[#fields + 1] = field
    else
      redis.call('ZADD', expiry, at, field)
    end
  end
  local head_at, head_exp, head = nil, nil, nil
  local function running(at, exp, fp, pid)
    if at ~= head_at or exp ~= head_exp then
      head_at, head_exp, head = at, exp, string.format('R %d %d ', at, exp)
    end
    return head .. fp .. ' ' .. (pid or '-')
  end
  function idem.read(field, now)
    local raw = get(field)
    if not raw then return nil end
    local st, at, exp, fp, rest = string.match(raw, '^(%a) (%d+) (%d+) (%S+) (.*)$')
    local rec = {st = st == 'D' and 'done' or 'running', at = tonumber(at), exp = tonumber(exp), fp = fp}
    if rec.exp <= now then return nil end
    if st == 'D' then
      local status, body = string.match(rest, '^(%d+) (.*)$')
      rec.status, rec.body = tonumber(status), body
    elseif rest ~= '-' then
      rec.pid = rest
    end
    return rec
  end
  function idem.decide(rec, fp)
    if not rec then return nil end
    if rec.fp ~= fp then return 'IDEMPOTENCY_KEY_REUSED' end
    if rec.st == 'running' then return 'IDEMPOTENCY_KEY_IN_USE' end
    return 'replay'
  end
  function idem.begin(field, fp, now, ttl, pid)
    set(field, running(now, now + ttl, fp, pid))
    expire_at(field, now + ttl)
  end
  function idem.rerun(field, rec, now)
    set(field, running(now, rec.exp, rec.fp, rec.pid))
  end
  function idem.store(field, status, body)
    local raw = get(field)
    local head = raw and string.match(raw, '^R (%d+ %d+ %S+) ')
    if not head then return false end
    set(field, 'D ' .. head .. ' ' .. status .. ' ' .. body)
    return true
  end
  function idem.release(field, fp)
    local raw = get(field)
    if not (raw and string.match(raw, '^R %d+ %d+ (%S+) ') == fp) then return false end
    redis.call('HDEL', hash, field)
    if buffered then
      cache[field] = false
      dirty[field] = nil  -- flush() skips it
    end
    return true
  end
  function idem.ask(field, fp, now, stale)
    local rec = idem.read(field, now)
    local decided = idem.decide(rec, fp)
    if decided == nil then return nil end
    if decided == 'replay' then
      if rec.status ~= 0 then
        return '{"replayed":1,"status":' .. rec.status .. ',"body":' .. rec.body .. '}'
      end
      if rec.body == '{}' then return '{"replayed":1}' end
      return string.sub(rec.body, 1, -2) .. ',"replayed":1}'
    end
    if decided == 'IDEMPOTENCY_KEY_REUSED' then return dg_error('IDEMPOTENCY_KEY_REUSED') end
    if rec.at + stale <= now then return nil end
    return dg_error('IDEMPOTENCY_KEY_IN_USE')
  end
  local unfiled = {PERSISTENCE_LAGGING = true, RATE_LIMITED = true, NOT_FOUND = true,
    VALIDATION_ERROR = true}
  function idem.settle(field, fp, now, ttl, answer)
    if unfiled[string.match(answer, '^{"err":"([%u_]+)"') or ''] then
      if get(field) then  -- a stopped request's record, taken over
        redis.call('HDEL', hash, field)
        if buffered then
          cache[field] = false
          dirty[field] = nil
        end
      end
      return
    end
    set(field, string.format('D %d %d %s 0 %s', now, now + ttl, fp, answer))
    expire_at(field, now + ttl)
  end
  function idem.each(records, n, decide, now, ttl, stale)
    local fields, answers = {}, {}
    for i = 1, n do
      if records[i] ~= 0 then fields[#fields + 1] = records[i][1] end
    end
    idem.load(fields)
    for i = 1, n do
      local r = records[i]
      if r == 0 then
        answers[i] = decide(i)
      else
        answers[i] = idem.ask(r[1], r[2], now, stale)
        if not answers[i] then
          answers[i] = decide(i)
          idem.settle(r[1], r[2], now, ttl, answers[i])
        end
      end
    end
    idem.flush()
    return answers
  end
  function idem.load(fields)
    if not buffered or #fields == 0 then return end
    local got = dg_call_chunked('HMGET', hash, fields, 1000)
    for i, field in ipairs(fields) do
      if cache[field] == nil then cache[field] = got[i] end
    end
  end
  function idem.flush()
    local args = {}
    for _, field in ipairs(order) do
      if dirty[field] then
        args[#args + 1] = field
        args[#args + 1] = cache[field]
        dirty[field] = nil  -- once, should it be listed twice
      end
    end
    if #args > 0 then dg_call_chunked('HSET', hash, args, 1000) end
    if #expiries > 0 then
      local args = {}
      for _, at in ipairs(expiries) do
        args[#args + 1] = at
        args[#args + 1] = table.concat(expiring[at], '\n')
      end
      dg_call_chunked('ZADD', expiry, args, 1000)
    end
    dirty, order, expiring, expiries = {}, {}, {}, {}
  end
  return idem
end
