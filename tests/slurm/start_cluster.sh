#!/usr/bin/env bash
# Start a throw-away single-node Slurm cluster on loopback, for testing the cluster profiles.
#
# Usage: tests/slurm/start_cluster.sh [--install] [DIR]
#   --install  apt-get update + install Debian's munge, slurm-wlm, slurmctld, slurmd, slurm-client
#              (needs root; skipped packages already installed are not reinstalled)
#   DIR        where config, state, logs and PID files live (default /tmp/defacebench-slurm)
# Ports: DEFACEBENCH_SLURMCTLD_PORT (default 6817) and DEFACEBENCH_SLURMD_PORT (default 6818).
# Then:   . DIR/env.sh        # exports SLURM_CONF so sbatch/squeue/snakemake talk to this cluster
# Stop:   tests/slurm/stop_cluster.sh DIR
#
# Runs as root, no systemd. Every daemon started here is listed in DIR/pids ("name pid" lines) and
# stopped by that PID (stop_cluster.sh); if start-up fails, whatever was started is stopped again.
# Why the settings below (measured on a 2-core Debian 12 VM, Slurm 22.05):
#  - no cgroups in such VMs: proctrack/linuxproc and task/none;
#  - no slurmdbd: accounting off (so clients must poll job states with squeue, not sacct);
#  - NodeName must equal `hostname -s`; EnforcePartLimits=ALL rejects an oversized job at submission
#    instead of leaving it pending forever;
#  - Snakemake's slurm-jobstep plugin unsets SLURM_CONF before calling srun inside a job, so srun reads
#    /etc/slurm/slurm.conf: slurmd (and therefore every job) runs in a private mount namespace where
#    DIR/etc is bind-mounted over /etc/slurm. The host's /etc is never written.
set -euo pipefail

INSTALL=0
if [ "${1:-}" = "--install" ]; then INSTALL=1; shift; fi
DIR=$(mkdir -p "${1:-/tmp/defacebench-slurm}" && cd "${1:-/tmp/defacebench-slurm}" && pwd)
CTLD_PORT=${DEFACEBENCH_SLURMCTLD_PORT:-6817}
SLURMD_PORT=${DEFACEBENCH_SLURMD_PORT:-6818}
HERE=$(cd "$(dirname "$0")" && pwd)
t0=$(date +%s)
say() { echo "[start_cluster $(( $(date +%s) - t0 ))s] $*"; }

if [ "$(id -u)" != 0 ]; then echo "start_cluster.sh: must run as root" >&2; exit 2; fi
if [ -s "$DIR/pids" ]; then
  echo "start_cluster.sh: $DIR/pids exists: a cluster may be running; run stop_cluster.sh $DIR first" >&2
  exit 2
fi

if [ "$INSTALL" = 1 ]; then
  say "apt-get update + install"
  export DEBIAN_FRONTEND=noninteractive
  # bounded: without a reachable package mirror apt-get can retry for many minutes
  timeout -k 10 240 apt-get update -qq > "$DIR/apt.log" 2>&1 || { tail -20 "$DIR/apt.log" >&2; exit 3; }
  timeout -k 10 300 apt-get install -y -qq --no-install-recommends munge slurm-wlm slurmctld slurmd slurm-client \
    >> "$DIR/apt.log" 2>&1 || { tail -20 "$DIR/apt.log" >&2; exit 3; }
fi
for exe in munged mungekey slurmctld slurmd sbatch squeue scontrol sinfo unshare; do
  command -v "$exe" > /dev/null || { echo "start_cluster.sh: $exe not found (use --install)" >&2; exit 3; }
done

# Fresh state every time: job ids and node state from an earlier run must not leak in.
rm -rf "$DIR"/{etc,state,log,run,munge}
mkdir -p "$DIR"/{etc,state/ctld,state/d,log,run,munge/etc,munge/run,munge/lib,munge/log}
# munged refuses a socket in a directory that not everyone may traverse (e.g. pytest's 0700 tmp dirs)
chmod 755 "$DIR" "$DIR/munge" "$DIR/munge/run"
chmod 700 "$DIR"/munge/etc "$DIR"/munge/lib "$DIR"/munge/log
: > "$DIR/pids"

record() { echo "$1 $2" >> "$DIR/pids"; }   # name pid: what stop_cluster.sh stops
fail() { echo "start_cluster.sh: $*" >&2; "$HERE/stop_cluster.sh" "$DIR" >&2 || true; exit 1; }
trap 'fail "start-up failed at line $LINENO"' ERR
waitfor() {  # seconds command...: poll once a second until the command succeeds
  local n=$1; shift
  for _ in $(seq 1 "$n"); do "$@" > /dev/null 2>&1 && return 0; sleep 1; done
  return 1
}

# ------------------------------------------------------------------ munge (authentication)
MSOCK=$DIR/munge/run/munge.socket.2
mungekey --create --force --keyfile="$DIR/munge/etc/munge.key"
munged --key-file="$DIR/munge/etc/munge.key" --socket="$MSOCK" --pid-file="$DIR/munge/run/munged.pid" \
       --log-file="$DIR/munge/log/munged.log" --seed-file="$DIR/munge/lib/munged.seed"   # daemonises
waitfor 10 test -s "$DIR/munge/run/munged.pid" || fail "munged wrote no PID file"
record munged "$(cat "$DIR/munge/run/munged.pid")"
waitfor 10 test -S "$MSOCK" || fail "munged socket missing"
munge -n --socket="$MSOCK" | unmunge --socket="$MSOCK" > /dev/null || fail "munge round trip failed"

# ------------------------------------------------------------------ slurm.conf
NODE=$(hostname -s)
# GNU nproc obeys OMP_NUM_THREADS, which a caller (a test process) may have set for its own work
CPUS=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)
MEM_MB=$(awk '/^MemTotal:/ {print int($2 / 1024) - 512}' /proc/meminfo)   # margin for the OS
cat > "$DIR/etc/slurm.conf" <<EOF
# Single-node test cluster written by tests/slurm/start_cluster.sh
ClusterName=defacebench
SlurmctldHost=${NODE}(127.0.0.1)
SlurmctldPort=${CTLD_PORT}
SlurmdPort=${SLURMD_PORT}
AuthType=auth/munge
AuthInfo=socket=${MSOCK}
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=${DIR}/state/ctld
SlurmdSpoolDir=${DIR}/state/d
SlurmctldPidFile=${DIR}/run/slurmctld.pid
SlurmdPidFile=${DIR}/run/slurmd.pid
SlurmctldLogFile=${DIR}/log/slurmctld.log
SlurmdLogFile=${DIR}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
MailProg=/bin/true
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
EnforcePartLimits=ALL
ReturnToService=2
MinJobAge=600
NodeName=${NODE} NodeAddr=127.0.0.1 CPUs=${CPUS} RealMemory=${MEM_MB} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
cat > "$DIR/env.sh" <<EOF
# Source this file to use the test cluster: . $DIR/env.sh
export SLURM_CONF=$DIR/etc/slurm.conf
EOF
export SLURM_CONF=$DIR/etc/slurm.conf

# ------------------------------------------------------------------ daemons
nohup slurmctld -D -i > "$DIR/log/slurmctld.stdout" 2>&1 &
record slurmctld $!
waitfor 30 sh -c 'scontrol ping | grep -q "is UP"' || fail "slurmctld did not come up (see $DIR/log/slurmctld.log)"
nohup unshare --mount --propagation private \
      sh -c "mount --bind '$DIR/etc' /etc/slurm && exec slurmd -D" > "$DIR/log/slurmd.stdout" 2>&1 &
record slurmd $!      # unshare execs sh, which execs slurmd: the same PID throughout
waitfor 60 sh -c 'sinfo -h -o %T | grep -qx idle' || fail "node not idle (see $DIR/log/slurmd.log)"

trap - ERR
say "up: $(sinfo -h -o '%P %a %D %T %N %c CPUs %m MB') (SLURM_CONF=$SLURM_CONF)"
