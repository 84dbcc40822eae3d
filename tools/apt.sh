# Sourced by tools/deps.sh and tools/test-fresh.sh (POSIX sh):
#   apt_install PKG...   apt-get update + install, without Recommends, as root
# Another process holding the dpkg or apt lock (an unattended upgrade, a
# second `make test`) is waited for, up to APT_LOCK_WAIT seconds (300), with
# a message naming it; only then is it a failure.

APT_LOCK_WAIT=${APT_LOCK_WAIT:-300}

# apt_lock_holder: the PID holding one of apt's or dpkg's locks, or nothing.
# They are fcntl locks, listed in /proc/locks as MAJOR:MINOR:INODE (hex
# device numbers) of the locked file.
apt_lock_holder() {
  for f in /var/lib/dpkg/lock-frontend /var/lib/dpkg/lock \
           /var/lib/apt/lists/lock /var/cache/apt/archives/lock; do
    id=$(stat -c '%d %i' "$f" 2>/dev/null) || continue
    pid=$(awk -v id="$id" '
      BEGIN {
        split(id, a, " ")
        major = int(a[1] / 256) % 4096; minor = a[1] % 256 + int(a[1] / 1048576) * 256
        key = sprintf("%02x:%02x:%s", major, minor, a[2])
      }
      $6 == key { print $5; exit }' /proc/locks 2>/dev/null)
    if [ -n "$pid" ]; then echo "$pid"; return 0; fi
  done
  return 0
}

# apt_wait_lock: returns once no process holds the locks, or fails after
# APT_LOCK_WAIT seconds.
apt_wait_lock() {
  waited=0
  said=""
  while :; do
    holder=$(apt_lock_holder)
    [ -z "$holder" ] && return 0
    if [ "$said" != "$holder" ]; then
      what=$(tr '\0' ' ' < "/proc/$holder/cmdline" 2>/dev/null | cut -c1-80)
      echo "deps: waiting for the dpkg lock held by PID $holder (${what:-?}), up to ${APT_LOCK_WAIT}s" >&2
      said=$holder
    fi
    if [ "$waited" -ge "$APT_LOCK_WAIT" ]; then
      echo "deps: the dpkg lock is still held by PID $holder after ${APT_LOCK_WAIT}s; try again when it is done" >&2
      return 1
    fi
    sleep 2
    waited=$((waited + 2))
  done
}

# apt_get ARGS...: apt-get, quiet unless it fails (then its output is shown).
# The lock is waited for here, and by apt-get itself for what remains of the
# bound (a lock taken between the check and the call).
apt_get() {
  apt_wait_lock || return 1
  log=$(mktemp /tmp/connkit-apt.XXXXXX)
  if DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout="$APT_LOCK_WAIT" "$@" > "$log" 2>&1; then
    rm -f "$log"
    return 0
  fi
  cat "$log" >&2
  rm -f "$log"
  echo "deps: apt-get $* failed" >&2
  return 1
}

apt_install() {
  apt_get update -q && apt_get install -y -q --no-install-recommends "$@"
}
