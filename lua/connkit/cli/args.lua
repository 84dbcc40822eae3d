--- The connkit command's arguments (argparse, Debian's lua-argparse): one
-- parser with a command per action; every command has --help.
-- @module connkit.cli.args
local argparse = require "argparse"

local M = {}

local EPILOG = "Credentials never go on the command line: give --credential name=@env:VAR,"
  .. " name=@file:PATH, or only the name to be asked on the terminal."

-- The options every command that works on an account takes.
local function account_options(cmd)
  cmd:argument("def", "The definition file (JSON or Lua).")
  cmd:option("-a --account", "The account's name in the store."):argname("<id>")
  cmd:option("-p --param", "A parameter of the integration, name=value (a secret one: name=@env:VAR"
    .. " or name=@file:PATH). Remembered for the account, except secret ones.")
    :count("*"):argname("<name=value>")
  cmd:option("-c --credential", "A credential: name=@env:VAR, name=@file:PATH, or name alone to be"
    .. " asked without echo (only names such as username take a plain value).")
    :count("*"):argname("<name=@env:VAR>")
  cmd:option("--store", "The token store directory (default $XDG_DATA_HOME/connkit)."):argname("<dir>")
  cmd:epilog(EPILOG)
end

--- A new parser for the whole command line.
-- @return the argparse parser
function M.parser()
  local p = argparse("connkit", "Log in, get tokens, make requests and move files with a connkit definition.")
    :command_target("command"):help_max_width(80):help_description_margin(26)
  p:epilog("Run `connkit <command> --help` for a command's options. Exit status: 0 success, 1 usage or"
    .. " definition errors, 22 a reply that is not 2xx, others: see the README.")

  local check = p:command("check", "Check a definition file; errors name the field.")
  check:argument("def", "The definition file (JSON or Lua).")

  local login = p:command("login", "Authorize an account (OAuth 2.0): loopback redirect or device flow.")
  account_options(login)
  login:flag("--device", "Use the device flow (RFC 8628) instead of a loopback redirect.")
  login:mutex(login:flag("--browser", "Open the URL with $BROWSER (else xdg-open)."),
    login:flag("--no-browser", "Only print the URL (the default)."))
  login:option("--port", "The loopback port (default: any free one)."):argname("<n>")
  login:option("--timeout", "Seconds to wait for the authorization (default 120)."):argname("<s>")
  login:option("--scope", "The scope to ask for instead of the definition's."):argname("<scope>")

  local token = p:command("token", "Print a valid access token on stdout, and nothing else.")
  account_options(token)

  local status = p:command("status", "Show what the store knows about an account (no secrets).")
  account_options(status)

  local revoke = p:command("revoke", "Revoke an account's tokens and drop them from the store.")
  account_options(revoke)

  local req = p:command("request", "Make an HTTP request with the account's credentials.")
  account_options(req)
  req:argument("url", "Absolute, or relative to the definition's base_url.")
  req:option("-X --method", "The method (default GET, POST with a body)."):argname("<method>")
  req:option("-H --header", "A header, 'Name: value'."):count("*"):argname("<header>")
  req:option("-q --query", "A query parameter, name=value."):count("*"):argname("<name=value>")
  req:mutex(
    req:option("--json", "A JSON body (@FILE reads a file, @- stdin)."):argname("<text>"),
    req:option("--data", "A raw body, form-encoded type unless -H says (@FILE, @-)."):argname("<text>"),
    req:option("--form", "A multipart field, name=value or name=@path."):count("*"):argname("<name=value>"))
  req:option("-o --output", "Write the body to FILE (kept as it was if the request fails)."):argname("<file>")
  req:flag("--paginate", "Follow the definition's pagination; one body per line.")
  req:flag("-i --include", "Print the status line and headers before the body.")
  req:option("--timeout", "Seconds for the whole request."):argname("<s>")

  local sftp = p:command("sftp", "Move files over SFTP: ls, get, put, rm, mkdir, mv.")
  account_options(sftp)
  sftp:command_target("op")
  sftp:flag("--resume", "get/put: continue the .part file a broken transfer left.")
  local ls = sftp:command("ls", "List a directory.")
  ls:argument("path", "The remote directory (default .)."):args("?")
  local get = sftp:command("get", "Download a file.")
  get:argument("remote", "The remote file.")
  get:argument("localpath", "Where to write it (default: its name, here)."):args("?")
  local put = sftp:command("put", "Upload a file.")
  put:argument("localpath", "The local file.")
  put:argument("remote", "Where to write it (default: its name)."):args("?")
  local rm = sftp:command("rm", "Remove a file.")
  rm:argument("path", "The remote file.")
  local mkdir = sftp:command("mkdir", "Make a directory.")
  mkdir:argument("path", "The remote directory.")
  mkdir:flag("--parents", "Make missing parents; an existing directory is fine.")
  local mv = sftp:command("mv", "Rename a file or directory (replacing an existing file).")
  mv:argument("from", "The remote path.")
  mv:argument("to", "The new remote path.")
  return p
end

return M
