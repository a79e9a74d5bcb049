-- The inverse of dg_code_unpack: a record table as the stored string (its upload mark kept).
local function dg_code_pack(r)
  local mark = r.mark or ''
  if r.rid == '' and r.assigned_at == '' then return r.type .. '|' .. r.status .. mark end
  return table.concat({r.type, r.status, r.rid, r.reserved_at, r.expires_at, r.assigned_at}, '|') .. mark
end
