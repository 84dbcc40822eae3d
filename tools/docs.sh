#!/bin/sh
# `make docs`: the reference of connkit's Lua modules with LDoc (Debian
# lua-ldoc; config.ld) into docs/, which git ignores. Fails on any LDoc
# warning: LDoc itself exits 0 after warnings, so its output is read;
# quiet (-q), it prints nothing but warnings and errors (and the line
# naming its config file, left out here).
#   DOCS_DIR   where the HTML goes (default docs/ of the tree)
#   DOCS_ROOT  the tree with config.ld (default this checkout; spec/docs_spec.lua)
set -u
root=${DOCS_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$root"
dir=${DOCS_DIR:-$root/docs}
command -v ldoc >/dev/null 2>&1 || { echo "docs: ldoc is not installed (sh tools/deps.sh installs lua-ldoc)" >&2; exit 1; }
rm -rf "$dir"
log=$(mktemp)
ldoc -q -d "$dir" . >"$log" 2>&1
rc=$?
out=$(grep -v '^reading configuration from config.ld$' "$log")
rm -f "$log"
if [ $rc -ne 0 ] || [ -n "$out" ]; then
  printf '%s\n' "$out" >&2
  echo "docs: LDoc reported the problems above (exit status $rc)" >&2
  exit 1
fi
echo "docs: written to $dir/index.html"
