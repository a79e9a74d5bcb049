-- A pending purchase's checkout session is kept apart from its record, in the tenant's
-- purchase sessions hash (purchase id -> "<session id>\n<checkout url>"; the payment
-- providers refuse ids and URLs with control characters): attaching it after the 201 is
-- then one field written, where splicing it into the record was the record read, rebuilt
-- and written back, a fifth of a purchase's Redis time. The record takes it in when the
-- purchase leaves its holds (dg_purchase_unhold), so the event of that change carries it
-- to PostgreSQL, and the entry goes. A record's own session (a settled purchase's, or one
-- attached in place by an earlier release) comes first.
-- `p` is the decoded record; with `fold`, the entry is removed (the caller writes `p`).
local function dg_purchase_session(sessions_key, p, fold)
  if type(p.session_id) ~= 'string' or p.session_id == '' then
    local kept = redis.call('HGET', sessions_key, p.purchase_id)
    if kept then
      local cut = string.find(kept, '\n', 1, true) or #kept + 1  -- (no URL: the session alone)
      p.session_id = string.sub(kept, 1, cut - 1)
      p.checkout_url = string.sub(kept, cut + 1)
    end
  end
  if fold then redis.call('HDEL', sessions_key, p.purchase_id) end
  return p
end
