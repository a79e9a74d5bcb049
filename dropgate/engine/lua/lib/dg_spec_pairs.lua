-- Check `name, value` pairs ARGV[first..] against `spec` (DG_SPEC): each name a field of
-- it that the script does not set itself (`owned`), a number where the field is one,
-- every field neither nullable nor owned given. Returns the HSET list (an empty value of
-- a nullable field: left absent), or nil and the offending field's name.
local function dg_spec_pairs(spec, first, owned)
  local known, given, flat = {}, {}, {}
  for _, f in ipairs(spec) do known[f[1]] = f end
  if (#ARGV - first + 1) % 2 ~= 0 then return nil, ARGV[#ARGV] end
  for i = first, #ARGV, 2 do
    local name, value = ARGV[i], ARGV[i + 1]
    local f = known[name]
    if f == nil or owned[name] or given[name] then return nil, name end
    given[name] = true
    if value ~= '' or not f[3] then
      if (f[2] == 'int' or f[2] == 'ms') and tonumber(value) == nil then return nil, name end
      flat[#flat + 1] = name
      flat[#flat + 1] = value
    end
  end
  for _, f in ipairs(spec) do
    if not f[3] and not owned[f[1]] and not given[f[1]] then return nil, f[1] end
  end
  return flat
end
