--- @include "dg_error"
--- @include "dg_actor_fence"
--- @include "dg_tenant_inactive"
-- Both fences of a tenant actor's critical script, checked before anything else:
-- the activation's lease (STALE_EPOCH), then the subscription (SUBSCRIPTION_INACTIVE).
-- Returns an error answer, or nil when the operation may go on.
local function dg_tenant_gate(tenant_key, lease_key, epoch, now_ms)
  local stale = dg_actor_fence(lease_key, epoch, now_ms)
  if stale then return dg_error('STALE_EPOCH', stale) end
  local inactive = dg_tenant_inactive(tenant_key, now_ms)
  if inactive then return dg_error('SUBSCRIPTION_INACTIVE', inactive) end
  return nil
end
