--- The records of the crash loop: write number n goes to account
-- ids[n % #ids + 1] and holds a record that is a function of (id, n) alone,
-- of a size that changes from write to write, so the checker can tell the
-- exact write a record comes from and whether it is whole.
local M = {}

--- The account id write n goes to.
function M.id_of(ids, n) return ids[n % #ids + 1] end

--- The record of write n to account id.
function M.record(id, n)
  local fill = string.char(97 + n % 26):rep(n * 37 % 2000)
  return {
    seq = n,
    account = id,
    access_token = ("at-%s-%d-%s"):format(id, n, fill),
    refresh_token = ("rt-%d"):format(n),
    expires_at = 1e9 + n,
    scope = "crash loop",
  }
end

return M
