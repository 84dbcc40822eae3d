-- Counts a request in the shared dict args.dict, in all and per worker, and
-- returns both counts so far.
return function(args)
  local dict = assert(ngx.shared[args.dict], "no lua_shared_dict " .. tostring(args.dict))
  local count = assert(dict:incr("count", 1, 0))
  assert(dict:incr("worker:" .. ngx.worker.id(), 1, 0))
  local per_worker = {}
  for i = 0, ngx.worker.count() - 1 do
    per_worker[#per_worker + 1] = dict:get("worker:" .. i) or 0
  end
  return { count = count, per_worker = per_worker }
end
