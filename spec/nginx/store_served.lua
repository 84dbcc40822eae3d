-- How many calls of store_call each worker served for args.name (by PID).
return function(args)
  local dict = ngx.shared[args.dict or "tokens"]
  local prefix = "served/" .. args.name .. "/"
  local out = {}
  for _, k in ipairs(dict:get_keys(0)) do
    if k:sub(1, #prefix) == prefix then out[k:sub(#prefix + 1)] = dict:get(k) end
  end
  return out
end
