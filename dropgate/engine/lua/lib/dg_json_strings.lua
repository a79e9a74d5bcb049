-- A JSON array of strings that need no escaping (validated ids and codes): cjson
-- would encode an empty table as {} where the answer needs [].
local function dg_json_strings(list)
  if #list == 0 then return '[]' end
  return '["' .. table.concat(list, '","') .. '"]'
end
