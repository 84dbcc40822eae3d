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
  "argparse", -- the connkit command (Debian: lua-argparse)
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
  install = { bin = { connkit = "bin/connkit" } }, -- LuaRocks wraps it with the rock's interpreter and paths
  modules = {
    ["connkit.core"] = {
      sources = {
        "csrc/core.c", "csrc/crypto.c", "csrc/curl_mem.c", "csrc/http.c", "csrc/http_async.c",
        "csrc/http_poll.c", "csrc/http_sink.c", "csrc/http_spec.c", "csrc/inflate.c",
        "csrc/interrupt.c", "csrc/jws.c", "csrc/lock.c", "csrc/loopback.c", "csrc/redis.c",
        "csrc/sftp.c", "csrc/sftp_ext.c", "csrc/sftp_fs.c", "csrc/sftp_key.c",
        "csrc/sftp_parallel.c", "csrc/template.c", "csrc/tls_client.c",
      },
      libraries = { "curl", "ssl", "crypto", "ssh2", "z", "hiredis", "pthread", "dl" },
      incdirs = { "$(CURL_INCDIR)", "$(OPENSSL_INCDIR)", "$(LIBSSH2_INCDIR)", "$(ZLIB_INCDIR)", "$(HIREDIS_INCDIR)" },
      libdirs = { "$(CURL_LIBDIR)", "$(OPENSSL_LIBDIR)", "$(LIBSSH2_LIBDIR)", "$(ZLIB_LIBDIR)", "$(HIREDIS_LIBDIR)" },
      defines = { "_GNU_SOURCE" },
    },
    ["connkit"] = "lua/connkit/init.lua",
    ["connkit.account"] = "lua/connkit/account.lua",
    ["connkit.account_inputs"] = "lua/connkit/account_inputs.lua",
    ["connkit.account_verify"] = "lua/connkit/account_verify.lua",
    ["connkit.auth.client_assertion"] = "lua/connkit/auth/client_assertion.lua",
    ["connkit.auth.custom_token"] = "lua/connkit/auth/custom_token.lua",
    ["connkit.auth.discovery"] = "lua/connkit/auth/discovery.lua",
    ["connkit.auth.dpop"] = "lua/connkit/auth/dpop.lua",
    ["connkit.auth.exchange"] = "lua/connkit/auth/exchange.lua",
    ["connkit.auth.jwk"] = "lua/connkit/auth/jwk.lua",
    ["connkit.auth.jwt"] = "lua/connkit/auth/jwt.lua",
    ["connkit.auth.jwt_auth"] = "lua/connkit/auth/jwt_auth.lua",
    ["connkit.auth.login"] = "lua/connkit/auth/login.lua",
    ["connkit.auth.oauth2"] = "lua/connkit/auth/oauth2.lua",
    ["connkit.auth.oidc"] = "lua/connkit/auth/oidc.lua",
    ["connkit.auth.par"] = "lua/connkit/auth/par.lua",
    ["connkit.auth.signing_key"] = "lua/connkit/auth/signing_key.lua",
    ["connkit.auth.token_endpoint"] = "lua/connkit/auth/token_endpoint.lua",
    ["connkit.auth.token_metadata"] = "lua/connkit/auth/token_metadata.lua",
    ["connkit.auth.token_record"] = "lua/connkit/auth/token_record.lua",
    ["connkit.auth.tokens"] = "lua/connkit/auth/tokens.lua",
    ["connkit.check"] = "lua/connkit/check.lua",
    ["connkit.cli"] = "lua/connkit/cli/init.lua",
    ["connkit.cli.args"] = "lua/connkit/cli/args.lua",
    ["connkit.cli.check"] = "lua/connkit/cli/check.lua",
    ["connkit.cli.context"] = "lua/connkit/cli/context.lua",
    ["connkit.cli.fail"] = "lua/connkit/cli/fail.lua",
    ["connkit.cli.login"] = "lua/connkit/cli/login.lua",
    ["connkit.cli.output"] = "lua/connkit/cli/output.lua",
    ["connkit.cli.progress"] = "lua/connkit/cli/progress.lua",
    ["connkit.cli.request"] = "lua/connkit/cli/request.lua",
    ["connkit.cli.revoke"] = "lua/connkit/cli/revoke.lua",
    ["connkit.cli.secrets"] = "lua/connkit/cli/secrets.lua",
    ["connkit.cli.sftp"] = "lua/connkit/cli/sftp.lua",
    ["connkit.cli.status"] = "lua/connkit/cli/status.lua",
    ["connkit.cli.status_codes"] = "lua/connkit/cli/status_codes.lua",
    ["connkit.cli.store"] = "lua/connkit/cli/store.lua",
    ["connkit.cli.token"] = "lua/connkit/cli/token.lua",
    ["connkit.cosync"] = "lua/connkit/cosync.lua",
    ["connkit.errors"] = "lua/connkit/errors.lua",
    ["connkit.hooks"] = "lua/connkit/hooks.lua",
    ["connkit.http.async"] = "lua/connkit/http/async.lua",
    ["connkit.http.attempt"] = "lua/connkit/http/attempt.lua",
    ["connkit.http.deadline"] = "lua/connkit/http/deadline.lua",
    ["connkit.http.files"] = "lua/connkit/http/files.lua",
    ["connkit.http.links"] = "lua/connkit/http/links.lua",
    ["connkit.http.paginate"] = "lua/connkit/http/paginate.lua",
    ["connkit.http.paginate_check"] = "lua/connkit/http/paginate_check.lua",
    ["connkit.http.rate_limit"] = "lua/connkit/http/rate_limit.lua",
    ["connkit.http.redirect"] = "lua/connkit/http/redirect.lua",
    ["connkit.http.refresh_rules"] = "lua/connkit/http/refresh_rules.lua",
    ["connkit.http.request"] = "lua/connkit/http/request.lua",
    ["connkit.http.response"] = "lua/connkit/http/response.lua",
    ["connkit.http.retry"] = "lua/connkit/http/retry.lua",
    ["connkit.http.threads"] = "lua/connkit/http/threads.lua",
    ["connkit.http.url"] = "lua/connkit/http/url.lua",
    ["connkit.integration"] = "lua/connkit/integration.lua",
    ["connkit.json"] = "lua/connkit/json.lua",
    ["connkit.jsonpath"] = "lua/connkit/jsonpath.lua",
    ["connkit.options"] = "lua/connkit/options.lua",
    ["connkit.sftp"] = "lua/connkit/sftp/init.lua",
    ["connkit.sftp.file"] = "lua/connkit/sftp/file.lua",
    ["connkit.sftp.login"] = "lua/connkit/sftp/login.lua",
    ["connkit.sftp.parallel"] = "lua/connkit/sftp/parallel.lua",
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
    ["connkit.tls"] = "lua/connkit/tls.lua",
    ["connkit.transport"] = "lua/connkit/transport/init.lua",
    ["connkit.transport.curl"] = "lua/connkit/transport/curl.lua",
    ["connkit.transport.ngx"] = "lua/connkit/transport/ngx.lua",
    ["connkit.transport.ngx_client_cert"] = "lua/connkit/transport/ngx_client_cert.lua",
    ["connkit.transport.ngx_files"] = "lua/connkit/transport/ngx_files.lua",
    ["connkit.transport.ngx_tls"] = "lua/connkit/transport/ngx_tls.lua",
    ["connkit.transport.ngx_wire"] = "lua/connkit/transport/ngx_wire.lua",
  },
}
test = {
  type = "command", -- busted from Debian: LuaRocks' busted runner would download it
  command = "sh tools/rock-test.sh", -- `luarocks test <rockspec> -- spec/x_spec.lua` runs only those
}
