#!/usr/bin/env bash
# Start a real single-node SLURM (munged + slurmctld + slurmd) for CI and print the environment that reaches it.
#
#   eval "$(bash .ci/start_slurm.sh)"      # prints: export SLURM_CONF=...; export PATH=<SLURM_ROOT>/bin:$PATH
#   sinfo; snakemake --profile profiles/slurm --profile profiles/slurm-ci ...
#   bash .ci/stop_slurm.sh                 # same SLURM_ROOT
#
# Everything (config, state, logs, munge key and socket) lives under $SLURM_ROOT: nothing is written to /etc or /run.
# No cgroups and no accounting (slurmdbd): the profile must use `slurm-status-command: squeue`.
# Idempotent: when this SLURM_ROOT's cluster already answers, it only prints the environment.
# Needs root (daemons run as root) and, when missing, installs the Debian packages slurmctld slurmd slurm-client munge.
# Knobs: SLURM_ROOT, SLURM_CI_CPUS (16), SLURM_CI_GPUS (2), SLURM_CI_MEM_MB (512000), SLURM_CI_PORT (6817; +1 slurmd).
set -euo pipefail

SLURM_ROOT="${SLURM_ROOT:-${TMPDIR:-/tmp}/meds1-slurm}"
CONF="$SLURM_ROOT/etc/slurm.conf"
NODE="$(hostname -s)"
# A production-sized node (config_overrides makes slurmd trust these numbers over the hardware) so the real
# profiles/slurm requests (8 CPUs, 64 GB, 12 h, a GPU) pass sbatch validation unchanged. Nothing is enforced:
# memory is not a consumable (CR_Core) and there are no cgroups.
NCPUS="${SLURM_CI_CPUS:-16}"
NGPUS="${SLURM_CI_GPUS:-2}"
MEM_MB="${SLURM_CI_MEM_MB:-512000}"
PORT="${SLURM_CI_PORT:-6817}"

print_env() {
  echo "export SLURM_ROOT=$SLURM_ROOT"
  echo "export SLURM_CONF=$CONF"
  echo "export PATH=$SLURM_ROOT/bin:\$PATH"
}

install_packages() {
  local missing=()
  for b in slurmctld slurmd sbatch munged; do command -v "$b" >/dev/null || missing+=("$b"); done
  ((${#missing[@]})) || return 0
  echo "installing slurm + munge (missing: ${missing[*]})" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  # "policy-rc.d denied execution of start" is expected without systemd: the daemons are started below.
  apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >&2
}

daemon_alive() { [ -s "$SLURM_ROOT/run/$1.pid" ] && kill -0 "$(cat "$SLURM_ROOT/run/$1.pid")" 2>/dev/null; }

cluster_answers() { daemon_alive slurmctld && SLURM_CONF="$CONF" sinfo -h >/dev/null 2>&1; }

start_munge() {
  # Own key and socket, so no /etc/munge or /run/munge is needed; slurm.conf points at the socket (AuthInfo).
  mkdir -p "$SLURM_ROOT/munge"
  chmod 711 "$SLURM_ROOT/munge"
  if [ ! -s "$SLURM_ROOT/munge/munge.key" ]; then
    dd if=/dev/urandom of="$SLURM_ROOT/munge/munge.key" bs=1024 count=1 status=none
    chmod 400 "$SLURM_ROOT/munge/munge.key"
  fi
  munged --force --socket="$SLURM_ROOT/munge/munge.socket.2" --key-file="$SLURM_ROOT/munge/munge.key" \
    --log-file="$SLURM_ROOT/log/munged.log" --pid-file="$SLURM_ROOT/run/munged.pid" \
    --seed-file="$SLURM_ROOT/munge/munged.seed"
}

write_slurm_conf() {
  cat > "$CONF" <<EOF
ClusterName=ci
SlurmctldHost=${NODE}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$SLURM_ROOT/munge/munge.socket.2
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
StateSaveLocation=$SLURM_ROOT/state
SlurmdSpoolDir=$SLURM_ROOT/spool
SlurmctldPidFile=$SLURM_ROOT/run/slurmctld.pid
SlurmdPidFile=$SLURM_ROOT/run/slurmd.pid
SlurmctldLogFile=$SLURM_ROOT/log/slurmctld.log
SlurmdLogFile=$SLURM_ROOT/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# No cgroups: plain process tracking, no task binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
# No slurmdbd: sacct cannot work, so Snakemake must poll with squeue (profiles/slurm: slurm-status-command).
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
# The default batch_sched_delay=3 makes every batch job wait about 3 s before it starts.
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
# squeue --states=all must still list a finished job when the plugin's backoff (up to 180 s) polls again; a job
# that has vanished counts as "running" and Snakemake would wait forever.
MinJobAge=600
ReturnToService=2
SlurmdParameters=config_overrides
GresTypes=gpu
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$NCPUS RealMemory=$MEM_MB Gres=gpu:$NGPUS State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=ALL MaxTime=INFINITE State=UP
EOF
}

write_fake_gpus() {
  # slurmd drops a gpu GRES without File= ("Removing file-less GPU") and the node goes INVAL; the File count must
  # equal the GPU count and each must be a device, so: one symlink to /dev/null per fake GPU. Jobs then get
  # CUDA_VISIBLE_DEVICES=0,1,... and GPU requests are serialised for real.
  mkdir -p "$SLURM_ROOT/dev"
  for i in $(seq 0 $((NGPUS - 1))); do ln -sfn /dev/null "$SLURM_ROOT/dev/fakegpu$i"; done
  cat > "$SLURM_ROOT/etc/gres.conf" <<EOF
AutoDetect=off
NodeName=$NODE Name=gpu File=$SLURM_ROOT/dev/fakegpu[0-$((NGPUS - 1))]
EOF
}

write_srun_wrapper() {
  # snakemake-executor-plugin-slurm-jobstep removes every SLURM_* variable, SLURM_CONF included, before its inner
  # `srun`, which then fails with "Could not establish a configuration source" for a config outside /etc/slurm.
  # This wrapper (first on PATH, which sbatch --export=ALL passes into jobs) puts SLURM_CONF back.
  # The real srun is looked up with our bin dir left out of PATH: when the environment of an earlier start is
  # still loaded, `command -v srun` would name this wrapper and it would exec itself forever.
  local real_srun
  real_srun="$(PATH="$(echo "$PATH" | tr ':' '\n' | grep -vxF "$SLURM_ROOT/bin" | paste -sd:)" command -v srun)"
  mkdir -p "$SLURM_ROOT/bin"
  cat > "$SLURM_ROOT/bin/srun" <<EOF
#!/bin/sh
export SLURM_CONF="\${SLURM_CONF:-$CONF}"
exec $real_srun "\$@"
EOF
  chmod +x "$SLURM_ROOT/bin/srun"
}

wait_for_node() {
  local state=""
  for _ in $(seq 1 300); do
    state=$(SLURM_CONF="$CONF" sinfo -h -N -o %T -n "$NODE" 2>/dev/null | head -1 || true)
    case "$state" in idle | mixed | allocated) return 0 ;; esac
    for d in slurmctld slurmd; do daemon_alive "$d" || { state="$d died"; break 2; }; done
    sleep 0.1
  done
  echo "SLURM did not come up (node $NODE: '${state}'); logs under $SLURM_ROOT/log:" >&2
  tail -n 30 "$SLURM_ROOT"/log/*.log >&2 || true
  return 1
}

install_packages
if cluster_answers; then
  echo "SLURM already running under $SLURM_ROOT" >&2
  print_env
  exit 0
fi
# Half-started leftovers of this SLURM_ROOT (e.g. munged alive, slurmctld dead) would be duplicated: stop them first.
SLURM_ROOT="$SLURM_ROOT" bash "$(dirname "$0")/stop_slurm.sh" 2>/dev/null || true

mkdir -p "$SLURM_ROOT"/{etc,state,spool,log,run}
start_munge
write_slurm_conf
write_fake_gpus
write_srun_wrapper
slurmctld -c -f "$CONF"   # -c: a fresh cluster, no jobs recovered from an earlier run's state
slurmd -f "$CONF"
wait_for_node
echo "SLURM up under $SLURM_ROOT (node $NODE: $NCPUS CPUs, $NGPUS fake GPUs)" >&2
print_env
