-- busted output handler: the usual terminal output, then one closing line
-- "N passed, N failed, N skipped" that CI reads (errors count as failed).
return function(options)
  local busted = require "busted"
  local handler = require("busted.outputHandlers.utfTerminal")(options)
  local subscribe = handler.subscribe
  handler.subscribe = function(self, opts)
    subscribe(self, opts)
    -- subscribed after the terminal handler, so printed after its summary
    busted.subscribe({ "suite", "end" }, function()
      io.write(("%d passed, %d failed, %d skipped\n"):format(handler.successesCount,
        handler.failuresCount + handler.errorsCount, handler.pendingsCount))
      io.flush()
      return nil, true
    end)
  end
  return handler
end
