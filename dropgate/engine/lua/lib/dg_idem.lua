-- Idempotency records (engine/idempotency.py), one per request key: a field
-- "<tenant>:<key digest>" of the partition's idempotency hash, in plain text, not
-- JSON (a body stored inside JSON was escaped on the way in and decoded on every read):
--   running: "R <at ms> <expiry ms> <fingerprint> <purchase id or ->"
--   done:    "D <at ms> <expiry ms> <fingerprint> <status> <body>"
-- dg_idem(hash, expiry) gives the operations on the records of `hash` (`expiry`: the
-- zset by expiry ms that offer_housekeep drops them by):
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
--                                    refused before any change: a repeat runs again)
local function dg_idem(hash, expiry)
  local idem = {}
  local function running(at, exp, fp, pid)
    return 'R ' .. string.format('%d %d ', at, exp) .. fp .. ' ' .. (pid or '-')
  end
  function idem.read(field, now)
    local raw = redis.call('HGET', hash, field)
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
    redis.call('HSET', hash, field, running(now, now + ttl, fp, pid))
    redis.call('ZADD', expiry, now + ttl, field)
  end
  function idem.rerun(field, rec, now)
    redis.call('HSET', hash, field, running(now, rec.exp, rec.fp, rec.pid))
  end
  function idem.store(field, status, body)
    local raw = redis.call('HGET', hash, field)
    local head = raw and string.match(raw, '^R (%d+ %d+ %S+) ')
    if not head then return false end
    redis.call('HSET', hash, field, 'D ' .. head .. ' ' .. status .. ' ' .. body)
    return true
  end
  function idem.release(field, fp)
    local raw = redis.call('HGET', hash, field)
    if raw and string.match(raw, '^R %d+ %d+ (%S+) ') == fp then
      redis.call('HDEL', hash, field)
    end
  end
  return idem
end
