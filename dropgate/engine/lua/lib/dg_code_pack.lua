-- The inverse of dg_code_unpack: a record table as the stored string.
local function dg_code_pack(r)
  if r.rid == '' and r.assigned_at == '' then return r.type .. '|' .. r.status end
  return table.concat({r.type, r.status, r.rid, r.reserved_at, r.expires_at, r.assigned_at}, '|')
end
