-- Proves the harness: connkit was required in init_by_lua (before the fork),
-- and this runs in a worker's content phase. Returns what it sees.
return function(args)
  local connkit = package.loaded.connkit
  return {
    who = args.who,
    phase = ngx.get_phase(),
    worker_pid = ngx.worker.pid(),
    connkit_preloaded = connkit ~= nil,
    core = package.loaded["connkit.core"] ~= nil,
    jit = jit and jit.version or nil,
    dicts = (function()
      local names = {}
      for name in pairs(ngx.shared) do names[#names + 1] = name end
      table.sort(names)
      return names
    end)(),
  }
end
