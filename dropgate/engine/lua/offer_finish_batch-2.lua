--[[
  After the payment provider answered: attach the checkout session to each purchase
  and store each request's final response under its idempotency key (the response
  the client is about to see). Batched per tenant like offer_reserve_batch.
  KEYS[1] purchases hash      <prefix>:{pN}:t:<tenant>:purchases
  KEYS[2] idempotency hash    <prefix>:{pN}:idem
  ARGV[1] tenant id
  ARGV[2] one JSON array of [purchase id ('' none), checkout session id, checkout url,
          idempotency digest ('' none), response status, response body] per request
  Returns {"done": n}
  Errors: none
  Writes KEYS[1] (checkout metadata, carried by the purchase's next event: no event
  of its own), KEYS[2] (running -> done).
]]
local tenant = ARGV[1]
local n = 0
for _, r in ipairs(cjson.decode(ARGV[2])) do
  local pid, session, url, digest = r[1], r[2], r[3], r[4]
  if pid ~= '' and session ~= '' then
    local raw = redis.call('HGET', KEYS[1], pid)
    if raw then
      local p = cjson.decode(raw)
      p.session_id = session
      p.checkout_url = url
      redis.call('HSET', KEYS[1], pid, cjson.encode(p))
    end
  end
  if digest ~= '' then
    local field = tenant .. ':' .. digest
    local raw = redis.call('HGET', KEYS[2], field)
    if raw then
      local rec = cjson.decode(raw)
      if rec.st == 'running' then
        rec.st = 'done'
        rec.status = tonumber(r[5])
        rec.body = r[6]
        redis.call('HSET', KEYS[2], field, cjson.encode(rec))
      end
    end
  end
  n = n + 1
end
return cjson.encode({done = n})
