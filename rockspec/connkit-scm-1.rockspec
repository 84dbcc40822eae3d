rockspec_format = "3.0"
package = "connkit"
version = "scm-1"
source = {
  url = "git+file:///dev/null", -- replaced by the project's repository when published
}
description = {
  summary = "Custom API integrations for Lua: define once, call with the right credentials every time",
  detailed = [[
connkit lets a Lua script define an API integration (parameters, auth type,
token placement, request parameters, refresh rules), create connected
accounts from it, and make HTTP requests or SFTP transfers with the right
credentials. libcurl does the networking, OpenSSL the crypto, libssh2 SFTP.
]],
  license = "MIT",
}
dependencies = {
  "lua >= 5.1, < 5.5",
  "lua-cjson",
}
external_dependencies = {
  CURL = { header = "curl/curl.h", library = "curl" },
  OPENSSL = { header = "openssl/evp.h", library = "crypto" },
  LIBSSH2 = { header = "libssh2.h", library = "ssh2" },
  ZLIB = { header = "zlib.h", library = "z" },
  HIREDIS = { header = "hiredis/hiredis.h", library = "hiredis" },
}
build = {
  type = "builtin",
  modules = {
    ["connkit.core"] = {
      sources = {
        "csrc/core.c", "csrc/crypto.c", "csrc/curl_mem.c", "csrc/http.c", "csrc/http_async.c",
        "csrc/http_poll.c", "csrc/http_sink.c", "csrc/http_spec.c", "csrc/inflate.c",
        "csrc/interrupt.c", "csrc/lock.c", "csrc/loopback.c", "csrc/redis.c", "csrc/sftp.c",
        "csrc/sftp_ext.c", "csrc/sftp_fs.c", "csrc/sftp_key.c", "csrc/template.c",
      },
      libraries = { "curl", "ssl", "crypto", "ssh2", "z", "hiredis", "pthread", "dl" },
      incdirs = { "$(CURL_INCDIR)", "$(OPENSSL_INCDIR)", "$(LIBSSH2_INCDIR)", "$(ZLIB_INCDIR)", "$(HIREDIS_INCDIR)" },
      libdirs = { "$(CURL_LIBDIR)", "$(OPENSSL_LIBDIR)", "$(LIBSSH2_LIBDIR)", "$(ZLIB_LIBDIR)", "$(HIREDIS_LIBDIR)" },
      defines = { "_GNU_SOURCE" },
    },
    ["connkit"] = "lua/connkit/init.lua",
    ["connkit.account"] = "lua/connkit/account.lua",
    ["connkit.auth.custom_token"] = "lua/connkit/auth/custom_token.lua",
    ["connkit.auth.login"] = "lua/connkit/auth/login.lua",
    ["connkit.auth.oauth2"] = "lua/connkit/auth/oauth2.lua",
    ["connkit.auth.token_endpoint"] = "lua/connkit/auth/token_endpoint.lua",
    ["connkit.auth.token_record"] = "lua/connkit/auth/token_record.lua",
    ["connkit.auth.tokens"] = "lua/connkit/auth/tokens.lua",
    ["connkit.check"] = "lua/connkit/check.lua",
    ["connkit.cosync"] = "lua/connkit/cosync.lua",
    ["connkit.errors"] = "lua/connkit/errors.lua",
    ["connkit.http.async"] = "lua/connkit/http/async.lua",
    ["connkit.http.attempt"] = "lua/connkit/http/attempt.lua",
    ["connkit.http.deadline"] = "lua/connkit/http/deadline.lua",
    ["connkit.http.files"] = "lua/connkit/http/files.lua",
    ["connkit.http.redirect"] = "lua/connkit/http/redirect.lua",
    ["connkit.http.request"] = "lua/connkit/http/request.lua",
    ["connkit.http.response"] = "lua/connkit/http/response.lua",
    ["connkit.http.retry"] = "lua/connkit/http/retry.lua",
    ["connkit.http.threads"] = "lua/connkit/http/threads.lua",
    ["connkit.http.url"] = "lua/connkit/http/url.lua",
    ["connkit.integration"] = "lua/connkit/integration.lua",
    ["connkit.json"] = "lua/connkit/json.lua",
    ["connkit.options"] = "lua/connkit/options.lua",
    ["connkit.sftp"] = "lua/connkit/sftp/init.lua",
    ["connkit.sftp.file"] = "lua/connkit/sftp/file.lua",
    ["connkit.sftp.login"] = "lua/connkit/sftp/login.lua",
    ["connkit.sftp.schema"] = "lua/connkit/sftp/schema.lua",
    ["connkit.sftp.transfer"] = "lua/connkit/sftp/transfer.lua",
    ["connkit.store"] = "lua/connkit/store/init.lua",
    ["connkit.store.common"] = "lua/connkit/store/common.lua",
    ["connkit.store.envelope"] = "lua/connkit/store/envelope.lua",
    ["connkit.store.file"] = "lua/connkit/store/file.lua",
    ["connkit.store.memory"] = "lua/connkit/store/memory.lua",
    ["connkit.store.redis"] = "lua/connkit/store/redis.lua",
    ["connkit.store.redis_hiredis"] = "lua/connkit/store/redis_hiredis.lua",
    ["connkit.store.redis_resty"] = "lua/connkit/store/redis_resty.lua",
    ["connkit.store.redis_scripts"] = "lua/connkit/store/redis_scripts.lua",
    ["connkit.store.shared"] = "lua/connkit/store/shared.lua",
    ["connkit.transport"] = "lua/connkit/transport/init.lua",
    ["connkit.transport.curl"] = "lua/connkit/transport/curl.lua",
    ["connkit.transport.ngx"] = "lua/connkit/transport/ngx.lua",
    ["connkit.transport.ngx_files"] = "lua/connkit/transport/ngx_files.lua",
    ["connkit.transport.ngx_tls"] = "lua/connkit/transport/ngx_tls.lua",
    ["connkit.transport.ngx_wire"] = "lua/connkit/transport/ngx_wire.lua",
  },
}
test = {
  type = "command",
  command = "make test",
}
