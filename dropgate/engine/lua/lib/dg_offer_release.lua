--- @include "dg_purchase_save"
--- @include "dg_purchase_unhold"
-- Release one pending purchase's hold: its units go back (reserved -= quantity), the
-- purchase becomes `status` ('expired', 'released', 'canceled' or 'failed'), it leaves
-- the offer's holds, taking its checkout session in (dg_purchase_unhold), and one
-- offer.purchase event is appended (needs dg_purchase_units): it carries the session.
-- `p` is the decoded purchase record; the caller checked p.status == 'pending'.
local function dg_offer_release(log_key, offer_key, holds_key, expiry_key, purchases_key,
                                users_key, sessions_key, p, status, now)
  dg_purchase_units(offer_key, users_key, p, 'none')
  dg_purchase_unhold(holds_key, expiry_key, sessions_key, p)
  p.status = status
  dg_purchase_save(log_key, purchases_key, offer_key, p.tenant_id, p.purchase_id, p, now)
end
