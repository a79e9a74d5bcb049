-- A pending purchase's checkout session is kept apart from its record, in the tenant's
-- purchase sessions hash (purchase id -> "<session id>\n<checkout url>"): attaching it
-- after the 201 is then one field written, where splicing it into the record was the
-- record read, rebuilt and written back, a fifth of a purchase's Redis time. The record
-- takes it in when the purchase settles (dg_offer_release, offer_confirm), so the event
-- of that change carries it to PostgreSQL, and the entry goes. A record's own session (a
-- settled purchase's, or one attached in place by an earlier release) comes first; the
-- entry gives it its URL when the record has none (PostgreSQL keeps no URL).
-- `p` is the decoded record; with `fold`, the entry is removed (the caller writes `p`).
local function dg_purchase_session(sessions_key, p, fold)
  local own = type(p.session_id) == 'string' and p.session_id ~= ''
  local has_url = type(p.checkout_url) == 'string' and p.checkout_url ~= ''
  if own and has_url and not fold then return p end
  local kept = redis.call('HGET', sessions_key, p.purchase_id)
  if kept then
    local cut = string.find(kept, '\n', 1, true) or #kept + 1  -- (no URL: the session alone)
    local session = string.sub(kept, 1, cut - 1)
    if not own then
      p.session_id = session
      p.checkout_url = string.sub(kept, cut + 1)
    elseif session == p.session_id and not has_url then
      p.checkout_url = string.sub(kept, cut + 1)
    end
    if fold then redis.call('HDEL', sessions_key, p.purchase_id) end
  end
  return p
end
