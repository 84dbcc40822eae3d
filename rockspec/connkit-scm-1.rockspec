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
}
build = {
  type = "builtin",
  modules = {
    ["connkit.core"] = {
      sources = {
        "csrc/core.c", "csrc/template.c", "csrc/http.c", "csrc/http_async.c", "csrc/http_poll.c", "csrc/http_spec.c", "csrc/curl_mem.c", "csrc/interrupt.c", "csrc/crypto.c",
        "csrc/lock.c", "csrc/loopback.c", "csrc/sftp.c", "csrc/sftp_ext.c", "csrc/sftp_fs.c", "csrc/sftp_key.c",
      },
      libraries = { "curl", "ssl", "crypto", "ssh2", "pthread", "dl" },
      incdirs = { "$(CURL_INCDIR)", "$(OPENSSL_INCDIR)", "$(LIBSSH2_INCDIR)" },
      libdirs = { "$(CURL_LIBDIR)", "$(OPENSSL_LIBDIR)", "$(LIBSSH2_LIBDIR)" },
      defines = { "_GNU_SOURCE" },
    },
    ["connkit"] = "lua/connkit/init.lua",
    ["connkit.account"] = "lua/connkit/account.lua",
    ["connkit.async"] = "lua/connkit/async.lua",
    ["connkit.check"] = "lua/connkit/check.lua",
    ["connkit.cosync"] = "lua/connkit/cosync.lua",
    ["connkit.custom_token"] = "lua/connkit/custom_token.lua",
    ["connkit.errors"] = "lua/connkit/errors.lua",
    ["connkit.integration"] = "lua/connkit/integration.lua",
    ["connkit.json"] = "lua/connkit/json.lua",
    ["connkit.login"] = "lua/connkit/login.lua",
    ["connkit.oauth2"] = "lua/connkit/oauth2.lua",
    ["connkit.options"] = "lua/connkit/options.lua",
    ["connkit.request"] = "lua/connkit/request.lua",
    ["connkit.attempt"] = "lua/connkit/attempt.lua",
    ["connkit.redirect"] = "lua/connkit/redirect.lua",
    ["connkit.deadline"] = "lua/connkit/deadline.lua",
    ["connkit.response"] = "lua/connkit/response.lua",
    ["connkit.retry"] = "lua/connkit/retry.lua",
    ["connkit.sftp"] = "lua/connkit/sftp.lua",
    ["connkit.sftp_file"] = "lua/connkit/sftp_file.lua",
    ["connkit.sftp_login"] = "lua/connkit/sftp_login.lua",
    ["connkit.sftp_schema"] = "lua/connkit/sftp_schema.lua",
    ["connkit.sftp_transfer"] = "lua/connkit/sftp_transfer.lua",
    ["connkit.store"] = "lua/connkit/store/init.lua",
    ["connkit.store.common"] = "lua/connkit/store/common.lua",
    ["connkit.store.file"] = "lua/connkit/store/file.lua",
    ["connkit.store.memory"] = "lua/connkit/store/memory.lua",
    ["connkit.token_endpoint"] = "lua/connkit/token_endpoint.lua",
    ["connkit.tokens"] = "lua/connkit/tokens.lua",
    ["connkit.url"] = "lua/connkit/url.lua",
  },
}
test = {
  type = "command",
  command = "make test",
}
