-- A memory error inside an nginx worker, for openresty_spec's check that
-- make test-asan sees one: frees a malloc'd block twice (through the FFI, so
-- no connkit code is involved). Without the sanitizer this corrupts the
-- worker's heap: only run it under sanitize.
local ffi = require "ffi"
ffi.cdef [[ void *malloc(size_t size); void free(void *ptr); ]]

return function()
  local block = ffi.C.malloc(16)
  ffi.C.free(block)
  ffi.C.free(block)
  return { freed = 2 }
end
