#!/usr/bin/env bash
# Stop the SLURM that .ci/start_slurm.sh started under $SLURM_ROOT: cancel its jobs, then end each daemon by the pid
# in its own pid file (never by name: other SLURM or munge daemons on the machine are left alone).
set -uo pipefail

SLURM_ROOT="${SLURM_ROOT:-${TMPDIR:-/tmp}/meds1-slurm}"
CONF="$SLURM_ROOT/etc/slurm.conf"
[ -d "$SLURM_ROOT/run" ] || { echo "no SLURM under $SLURM_ROOT" >&2; exit 0; }

if [ -s "$SLURM_ROOT/run/slurmctld.pid" ] && command -v scancel >/dev/null; then
  SLURM_CONF="$CONF" timeout 10 scancel --full --quiet -u "$(id -un)" 2>/dev/null || true
fi

stop_by_pid_file() {
  local file="$SLURM_ROOT/run/$1.pid" pid
  [ -s "$file" ] || return 0
  pid="$(cat "$file")"
  # A stale pid file may name a reused pid: only signal the process if it is still this daemon.
  if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$1" ]; then
    kill "$pid"
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
  fi
  rm -f "$file"
}

# slurmd first (it reports to slurmctld), munged last (both daemons authenticate through it).
for daemon in slurmd slurmctld munged; do stop_by_pid_file "$daemon"; done
echo "SLURM under $SLURM_ROOT stopped" >&2
