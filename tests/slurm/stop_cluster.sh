#!/usr/bin/env bash
# Stop the test cluster started by start_cluster.sh: cancel its jobs, then stop each daemon it
# started, by the PID recorded in DIR/pids, newest first (slurmd, slurmctld, munged).
# Usage: tests/slurm/stop_cluster.sh [DIR]   (default /tmp/defacebench-slurm). Safe to run twice.
set -u
DIR=${1:-/tmp/defacebench-slurm}
[ -s "$DIR/pids" ] || exit 0

# Jobs run under slurmstepd, which outlives slurmd: cancel them while the controller is up.
if [ -f "$DIR/etc/slurm.conf" ] && command -v scancel > /dev/null; then
  export SLURM_CONF=$DIR/etc/slurm.conf
  if timeout 10 scontrol ping 2> /dev/null | grep -q "is UP"; then
    timeout 10 squeue -h -o %i 2> /dev/null | xargs -r timeout 10 scancel 2> /dev/null
    for _ in $(seq 1 20); do
      [ -z "$(timeout 10 squeue -h -o %i 2> /dev/null)" ] && break
      sleep 1
    done
  fi
fi

status=0
while read -r name pid; do
  [ -n "$pid" ] || continue
  # only signal the process we started: the PID must still belong to a process of that name
  comm=$(cat "/proc/$pid/comm" 2> /dev/null) || continue
  [ "$comm" = "$name" ] || { echo "stop_cluster.sh: PID $pid is now '$comm', not $name: left alone" >&2; continue; }
  kill "$pid" 2> /dev/null || continue
  for _ in $(seq 1 30); do kill -0 "$pid" 2> /dev/null || break; sleep 0.5; done
  if kill -0 "$pid" 2> /dev/null; then
    echo "stop_cluster.sh: $name ($pid) ignored SIGTERM for 15 s: SIGKILL" >&2
    kill -9 "$pid" 2> /dev/null || status=1
  fi
done < <(tac "$DIR/pids")
rm -f "$DIR/pids"
exit $status
