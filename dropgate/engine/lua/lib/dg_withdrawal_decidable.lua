--- @include "dg_error"
--- @include "dg_hash_object"
-- A withdrawal a second pair of eyes may decide (approve or reject): pending, and the
-- deciding key's identity (its name, compared case-insensitively: the caller lowercases
-- both) is not the initiating key's. Withdrawals from before key names compare the body
-- labels. Returns the withdrawal, or nil and the error answer.
local function dg_withdrawal_decidable(withdrawal_key, withdrawal_id, label, identity)
  local w = dg_hash_object(withdrawal_key)
  if w == nil then return nil, dg_error('NOT_FOUND', {withdrawal_id = withdrawal_id}) end
  if w.status ~= 'pending' then
    return nil, dg_error('CONFLICT', {withdrawal_id = withdrawal_id, status = w.status})
  end
  local same
  if w.initiator ~= nil and w.initiator ~= '' then same = w.initiator == identity
  else same = w.initiated_by == label end
  if same then
    return nil, dg_error('FOUR_EYES_REQUIRED',
      {withdrawal_id = withdrawal_id, initiated_by = w.initiated_by})
  end
  return w, nil
end
