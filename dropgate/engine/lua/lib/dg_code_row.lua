-- A code's full state for an event payload: [code, status, reserve_id, reserved_at_ms,
-- expires_at_ms, assigned_at_ms] with JSON nulls for absent fields. The applier sets
-- the row to exactly this, so events carry state, not deltas.
local function dg_code_row(code, r)
  local names = {a = 'available', r = 'reserved', s = 'assigned'}
  local function ms(v) if v == '' then return cjson.null end return tonumber(v) end
  local rid = r.rid
  if rid == '' then rid = cjson.null end
  return {code, names[r.status], rid, ms(r.reserved_at), ms(r.expires_at), ms(r.assigned_at)}
end
