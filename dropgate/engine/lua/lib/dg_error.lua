-- An error answer: {"err": code, "details": {...}}. The Python runner raises the
-- exception class of `code`. Every script validates before its first write, so an
-- error answer always means nothing was changed.
local function dg_error(code, details)
  local d = '{}'
  if details ~= nil and next(details) ~= nil then d = cjson.encode(details) end
  return '{"err":"' .. code .. '","details":' .. d .. '}'
end
