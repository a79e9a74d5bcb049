-- A campaign code's record `type|status|reserve_id|reserved_at_ms|expires_at_ms|assigned_at_ms`
-- (status a = available, r = reserved, s = assigned; trailing fields may be absent),
-- optionally followed by `#<n>`: the number of the upload that inserted the code
-- (codes_upload-5.lua), kept as `mark` so that dg_code_pack writes it back,
-- as a table of strings, '' for an absent field.
local function dg_code_unpack(v)
  local body, mark = string.match(v, '^([^#]*)(.*)$')
  local f = {}
  for part in string.gmatch(body .. '|', '([^|]*)|') do f[#f + 1] = part end
  return {type = f[1], status = f[2] or 'a', rid = f[3] or '', reserved_at = f[4] or '',
          expires_at = f[5] or '', assigned_at = f[6] or '', mark = mark}
end
