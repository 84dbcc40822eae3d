-- A scenario that raises: the harness answers 500 with the message.
return function(args)
  error("scenario failed on purpose: " .. tostring(args.why))
end
