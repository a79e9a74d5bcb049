--- @include "dg_purchase_save"
--- @include "dg_purchase_session"
-- Release one pending purchase's hold: its units go back (reserved -= quantity), the
-- purchase becomes `status` ('expired', 'released', 'canceled' or 'failed'), it leaves
-- the offer's holds and the partition's expiry queue, and one offer.purchase event is
-- appended (needs dg_purchase_units). Its checkout session, kept apart while it was
-- pending, goes into the record (dg_purchase_session): the event carries it.
-- `p` is the decoded purchase record; the caller checked p.status == 'pending'.
local function dg_offer_release(log_key, offer_key, holds_key, expiry_key, purchases_key,
                                users_key, sessions_key, p, status, now)
  dg_purchase_units(offer_key, users_key, p, 'none')
  dg_purchase_session(sessions_key, p, true)
  redis.call('ZREM', holds_key, p.purchase_id)
  -- the queue names the offer, not its holds (the sweeper queues it again); a hold an
  -- earlier release queued on its own leaves it here
  redis.call('ZREM', expiry_key, p.tenant_id .. ':' .. p.offer_id .. ':' .. p.purchase_id)
  p.status = status
  dg_purchase_save(log_key, purchases_key, offer_key, p.tenant_id, p.purchase_id, p, now)
end
