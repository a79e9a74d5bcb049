-- A promo's definition as the promo.saved event carries it (counters excluded: the
-- persister never writes them; PostgreSQL derives them from the use rows).
local function dg_promo_definition(promo_key)
  local f = redis.call('HMGET', promo_key, 'tenant_id', 'code', 'kind', 'amount', 'percent',
    'currency', 'max_uses', 'per_customer_limit', 'starts_at_ms', 'ends_at_ms', 'active',
    'created_ms')
  return {
    tenant_id = f[1], code = f[2], kind = f[3],
    amount = tonumber(f[4]) or cjson.null, percent = tonumber(f[5]) or cjson.null,
    currency = f[6], max_uses = tonumber(f[7]) or cjson.null,
    per_customer_limit = tonumber(f[8]),
    starts_at_ms = tonumber(f[9]) or cjson.null, ends_at_ms = tonumber(f[10]) or cjson.null,
    active = f[11] == '1', created_ms = tonumber(f[12])}
end
