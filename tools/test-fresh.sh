#!/bin/sh
# `make test-fresh`: the committed tree's `make test` and `make demo` on a
# bare Debian 12 root, as on a newcomer's freshly installed machine.
#
#  1. A Debian 12 (bookworm) root made by `debootstrap --variant=minbase`
#     from the mirror this host's apt uses, cached in .cache/fresh-root/
#     (FRESH_CACHE). The cache holds only that bare root: each run works on
#     an overlay over it whose upper layer is the run's own directory
#     (.cache/fresh-run.*, removed afterwards), so nothing a run installs
#     ever reaches the cache.
#  2. Copied in from this host, as a new machine of this kind has them:
#     resolv.conf and hosts, the CA certificates (the local CAs and the
#     bundle, and any file a CA variable names), the npm client
#     configuration (user and global npmrc, npm's cafile) and the proxy
#     settings of apt, npm and the environment. Without them the Debian
#     and npm registries are not reachable from inside.
#  3. Installed there: gcc make git python3 ca-certificates nodejs npm, from
#     Debian, without Recommends, and nothing else. Then a clone of this
#     repository's HEAD in /root/connkit, and in it `make test` and
#     `make demo`, their output shown as they run.
#
# Fails when either fails. The root runs in its own mount and PID
# namespaces: /proc, /dev, /dev/pts, /dev/shm and /sys are mounted for it
# and unmounted on exit, and every process started in it (the only
# processes of that PID namespace) is killed at the end.
#
# Needs root (debootstrap, mounts, chroot); installs debootstrap when it is
# missing. FRESH_REBUILD=1 makes the cached root again; FRESH_KEEP=1 keeps
# the run's directory (its logs and its root) for a look afterwards.
set -eu
SUITE=bookworm
BASE_PKGS="gcc make git python3 ca-certificates nodejs npm"
tools=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$tools/.." && pwd)

say() { printf 'test-fresh: %s\n' "$*"; }
die() { say "$*" >&2; exit 1; }
now() { date +%s; }

# apt_sources: "URI SUITE COMPONENTS..." for every enabled deb source of
# this host, from one-line (.list) and deb822 (.sources) files.
apt_sources() {
  set --
  [ -f /etc/apt/sources.list ] && set -- /etc/apt/sources.list
  for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] && set -- "$@" "$f"
  done
  [ $# -gt 0 ] || return 0
  awk '
    function flush(   nu, ns, a, b, U, S) {
      if (types ~ /(^|[ \t])deb([ \t]|$)/ && enabled != "no") {
        nu = split(uris, U, /[ \t]+/); ns = split(suites, S, /[ \t]+/)
        for (a = 1; a <= nu; a++) for (b = 1; b <= ns; b++) print U[a], S[b], comps
      }
      types = uris = suites = comps = enabled = ""
    }
    FNR == 1 { flush() }
    FILENAME ~ /\.sources$/ {
      if ($0 ~ /^[ \t]*$/) { flush(); next }
      if ($0 ~ /^#/ || $0 ~ /^[ \t]/) next
      k = tolower($0); sub(/:.*/, "", k); v = $0; sub(/^[^:]*:[ \t]*/, "", v)
      if (k == "types") types = v; else if (k == "uris") uris = v
      else if (k == "suites") suites = v; else if (k == "components") comps = v
      else if (k == "enabled") enabled = tolower(v)
      next
    }
    $1 == "deb" {
      i = 2
      if ($2 ~ /^\[/) { while (i < NF && $i !~ /\]$/) i++; i++ }
      c = ""; for (j = i + 2; j <= NF; j++) c = c " " $j
      print $i, $(i + 1), substr(c, 2)
    }
    END { flush() }' "$@"
}

# ---------------------------------------------------------------------------
# Inside: PID 1 of fresh mount and PID namespaces (see the end of the file).
inside() {
  run=$1 lower=$2
  R=$run/root
  log() { say "$*"; }
  cleanup() {
    set +e
    # the other processes of this PID namespace: all started in the root,
    # and none should be left (the suite stops its peers); named, then ended
    for p in "$R"/proc/[0-9]*; do
      [ "${p##*/}" = 1 ] && continue
      cmd=$(tr '\0' ' ' < "$p/cmdline" 2>/dev/null | cut -c1-100)
      [ -n "$cmd" ] && say "ending a process left in the root: ${p##*/} $cmd" >&2
    done
    kill -9 -1 2>/dev/null
    for m in sys dev/shm dev/pts dev proc; do
      mountpoint -q "$R/$m" && umount -l "$R/$m"
    done
    mountpoint -q "$R" && umount -l "$R"
  }
  trap cleanup EXIT
  trap 'exit 130' INT TERM HUP

  mount -t overlay overlay -o "lowerdir=$lower,upperdir=$run/upper,workdir=$run/work" "$R"
  mount -t proc proc "$R/proc"
  mount --bind /dev "$R/dev"
  mount --bind /dev/pts "$R/dev/pts"
  mount -t tmpfs -o mode=1777,nosuid,nodev shm "$R/dev/shm"
  mount -t sysfs -o ro sysfs "$R/sys"

  # --- what a new machine of this kind has --------------------------------
  copy() { # copy FILE [DEST]: a host file to the same (or DEST) path in the root
    [ -f "$1" ] || return 0
    mkdir -p "$R$(dirname "${2:-$1}")"
    cp -L "$1" "$R${2:-$1}"
    case " $copied " in *" ${2:-$1} "*) ;; *) copied="$copied ${2:-$1}" ;; esac
  }
  copied=""
  copy /etc/resolv.conf
  copy /etc/hosts
  for f in /usr/local/share/ca-certificates/*.crt /usr/local/share/ca-certificates/*/*.crt; do
    copy "$f"
  done
  # apt: the host's Debian sources for this suite, and its proxy settings
  apt_sources | awk -v s="$SUITE" '$2 == s || $2 == s "-updates" || $2 == s "-security" {
    print "deb " $0 }' > "$R/etc/apt/sources.list"
  [ -s "$R/etc/apt/sources.list" ] || echo "deb $mirror $SUITE main" > "$R/etc/apt/sources.list"
  apt-config dump 2>/dev/null | grep -i '^Acquire::[a-z]*::Proxy' > "$R/etc/apt/apt.conf.d/90host-proxy" || true
  [ -s "$R/etc/apt/apt.conf.d/90host-proxy" ] || rm -f "$R/etc/apt/apt.conf.d/90host-proxy"
  # a chroot has no init: packages must not start their daemons here
  printf '#!/bin/sh\nexit 101\n' > "$R/usr/sbin/policy-rc.d"
  chmod 755 "$R/usr/sbin/policy-rc.d"

  # the environment the root's commands get: the host's proxy, CA and npm
  # variables (the files they name are copied in), nothing else
  set -- HOME=/root LANG=C.UTF-8 TERM=dumb PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
  for v in $(env | sed -n 's/^\([A-Za-z_][A-Za-z0-9_]*\)=.*/\1/p' | grep -E \
      '^(https?_proxy|ftp_proxy|all_proxy|no_proxy|HTTPS?_PROXY|FTP_PROXY|ALL_PROXY|NO_PROXY|NODE_EXTRA_CA_CERTS|SSL_CERT_FILE|SSL_CERT_DIR|CURL_CA_BUNDLE|REQUESTS_CA_BUNDLE|GIT_SSL_CAINFO|PIP_CERT|[Nn][Pp][Mm]_[Cc][Oo][Nn][Ff][Ii][Gg]_.*)$'); do
    eval "val=\${$v}"
    set -- "$@" "$v=$val"
    case "$v" in NODE_EXTRA_CA_CERTS|SSL_CERT_FILE|CURL_CA_BUNDLE|REQUESTS_CA_BUNDLE|GIT_SSL_CAINFO|PIP_CERT) copy "$val" ;; esac
  done
  in_root() { chroot "$R" /usr/bin/env -i "$@"; }

  # --- the newcomer's own packages ----------------------------------------
  t=$(now)
  log "installing $BASE_PKGS in the root (no Recommends)"
  if ! { in_root "$@" apt-get update -q && in_root "$@" DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -q --no-install-recommends $BASE_PKGS; } > "$run/base.log" 2>&1; then
    cat "$run/base.log"
    die "installing $BASE_PKGS failed"
  fi
  log "installed in $(($(now) - t)) s"
  # the CA bundle exactly as the host has it, and npm's client configuration
  copy /etc/ssl/certs/ca-certificates.crt
  if command -v npm >/dev/null 2>&1; then
    cafile=$(npm config get cafile 2>/dev/null || true)
    case "$cafile" in /*) copy "$cafile" ;; esac
    userconfig=$(npm config get userconfig 2>/dev/null || true)
    [ -n "$userconfig" ] && copy "$userconfig" /root/.npmrc
    globalconfig=$(npm config get globalconfig 2>/dev/null || true)
    [ -n "$globalconfig" ] && copy "$globalconfig"
    copy /etc/npmrc
    # where the root's npm (Debian's) reads its global configuration
    rootglobal=$(in_root "$@" npm config get globalconfig 2>/dev/null || true)
    if [ -n "$globalconfig" ] && [ -n "$rootglobal" ] && [ ! -e "$R$rootglobal" ]; then
      copy "$globalconfig" "$rootglobal"
    fi
  else
    copy "${HOME:-/root}/.npmrc" /root/.npmrc
    copy /etc/npmrc
  fi
  log "copied from this host:$copied"

  # --- the committed tree -------------------------------------------------
  head=$(git -C "$repo" rev-parse HEAD)
  git clone -q --no-local --no-checkout "$repo" "$R/root/connkit"
  git -C "$R/root/connkit" checkout -q --detach "$head"
  log "cloned $head into /root/connkit"

  # --- the two README commands ---------------------------------------------
  status=0
  summary=""
  for target in test demo; do
    t=$(now)
    log "make $target (in the root, /root/connkit)"
    { if in_root "$@" sh -c "cd /root/connkit && exec make $target" 2>&1; then rc=0; else rc=$?; fi
      echo "$rc" > "$run/$target.rc"; } | tee "$run/$target.log"
    rc=$(cat "$run/$target.rc")
    [ "$rc" = 0 ] || status=1
    summary="$summary
  make $target: exit $rc, $(($(now) - t)) s"
  done
  say "results:$summary"
  exit $status
}

# ---------------------------------------------------------------------------
# Outside: the cached root, the run's directory, the namespaces.
outside() {
  [ "$(id -u)" = 0 ] || die "needs root (debootstrap, mounts, chroot)"
  start=$(now)
  if ! command -v debootstrap >/dev/null 2>&1; then
    say "installing debootstrap on this host"
    . "$tools/apt.sh"
    apt_install debootstrap || die "could not install debootstrap"
  fi
  if ! git -C "$repo" diff --quiet HEAD 2>/dev/null; then
    say "note: uncommitted changes are not tested; the root gets HEAD ($(git -C "$repo" rev-parse --short HEAD))"
  fi

  mirror=$(apt_sources | awk -v s="$SUITE" '$2 == s { print $1; exit }')
  if [ -z "$mirror" ]; then
    mirror=http://deb.debian.org/debian
    say "no apt source for $SUITE on this host; using $mirror"
  fi
  export mirror

  cache=${FRESH_CACHE:-$repo/.cache/fresh-root}
  mkdir -p "$cache"
  cache=$(cd "$cache" && pwd)
  # One run builds the cached root at a time; runs share it read-only (a
  # shared lock held while the overlay uses it).
  exec 9> "$cache/.lock"
  flock -x 9
  stamp="debootstrap --variant=minbase $SUITE $mirror $(dpkg --print-architecture)"
  if [ "${FRESH_REBUILD:-}" = 1 ] || [ ! -x "$cache/root/bin/sh" ] ||
     [ "$(cat "$cache/stamp" 2>/dev/null)" != "$stamp" ]; then
    t=$(now)
    say "building the bare root: $stamp (cached in $cache)"
    rm -rf "$cache/root" "$cache/root.new" "$cache/stamp"
    if ! debootstrap --variant=minbase "$SUITE" "$cache/root.new" "$mirror" > "$cache/debootstrap.log" 2>&1; then
      tail -n 40 "$cache/debootstrap.log" >&2
      die "debootstrap failed (log: $cache/debootstrap.log)"
    fi
    mv "$cache/root.new" "$cache/root"
    echo "$stamp" > "$cache/stamp"
    say "bare root built in $(($(now) - t)) s"
  else
    say "bare root from the cache ($cache)"
  fi
  flock -s 9

  run=$(mktemp -d "$repo/.cache/fresh-run.XXXXXX")
  mkdir "$run/upper" "$run/work" "$run/root"
  ns=""
  finish() {
    set +e
    if [ -n "$ns" ] && kill -0 "$ns" 2>/dev/null; then
      # unshare ignores SIGTERM while it waits; killed, it takes its child
      # (--kill-child), PID 1 of the namespace, and with it every process
      # of the namespace; the mounts go with the mount namespace.
      kill -KILL "$ns" 2>/dev/null
      wait "$ns" 2>/dev/null
    fi
    # nothing may outlive the run: a process whose root is the run's root
    # would be a leak of the namespace (never expected); report and end it
    for p in /proc/[0-9]*; do
      r=$(readlink "$p/root" 2>/dev/null) || continue
      case "$r" in "$run/root"|"$run/root/"*)
        say "ending leftover process ${p#/proc/}: $(tr '\0' ' ' < "$p/cmdline" 2>/dev/null | cut -c1-80)" >&2
        kill -KILL "${p#/proc/}" 2>/dev/null ;;
      esac
    done
    if grep -q " $run/" /proc/mounts; then
      say "mounts left under $run: not removing it" >&2
    elif [ "${FRESH_KEEP:-}" = 1 ]; then
      say "kept $run (FRESH_KEEP=1)"
    else
      rm -rf "$run"
    fi
  }
  trap finish EXIT
  trap 'exit 130' INT TERM HUP

  set +e
  unshare --mount --pid --fork --propagation private --kill-child \
    sh "$tools/test-fresh.sh" --inside "$run" "$cache/root" &
  ns=$!
  wait "$ns"
  rc=$?
  ns=""
  set -e
  say "$( [ "$rc" = 0 ] && echo passed || echo FAILED) in $(($(now) - start)) s"
  exit "$rc"
}

if [ "${1:-}" = --inside ]; then
  inside "$2" "$3"
else
  outside
fi
