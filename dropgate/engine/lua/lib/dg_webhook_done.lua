--- @include "dg_emit"
-- A payment-provider webhook event handled: its id is marked with the outcome for 7
-- days (a repeated delivery then changes nothing) and one offer.webhook event records it.
local function dg_webhook_done(log_key, mark_key, event_id, tenant_id, purchase_id, event_type,
                               outcome, now)
  redis.call('SET', mark_key, outcome, 'PX', 7 * 86400000)
  dg_emit(log_key, 'offer.webhook', 'webhook:' .. event_id, 1, {event_id = event_id,
    tenant_id = tenant_id, purchase_id = purchase_id, type = event_type, outcome = outcome,
    at_ms = now})
end
