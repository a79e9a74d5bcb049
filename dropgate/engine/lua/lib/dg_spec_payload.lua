-- A <kind>.saved event's payload from the entity's hash as read (string values): each
-- field of `spec` (DG_SPEC, generated from dropgate/specs) in its JSON form; an absent
-- field is null, a flag absent or not '1' is false. `ids` (optional): fields given by
-- the caller's arguments rather than read from the hash.
local function dg_spec_payload(spec, obj, ids)
  local out = {}
  for _, f in ipairs(spec) do
    local v = obj[f[1]]
    if f[2] == 'int' or f[2] == 'ms' then
      v = tonumber(v)
    elseif f[2] == 'flag' then
      v = v == '1'
    end
    if v == nil then v = cjson.null end
    out[f[1]] = v
  end
  for k, v in pairs(ids or {}) do out[k] = v end
  return out
end
