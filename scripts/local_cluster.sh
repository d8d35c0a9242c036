#!/usr/bin/env bash
# A real single-node SLURM cluster and a real PostgreSQL server on this machine, for `lit-vir sweep`'s tests and for
# trying a sweep as it runs on a cluster (Debian's slurm-wlm, munge and postgresql; as root, no systemd needed).
#
#   scripts/local_cluster.sh slurm start DIR      # munged + slurmctld + slurmd; prints `export SLURM_CONF=...`
#   scripts/local_cluster.sh slurm stop DIR
#   scripts/local_cluster.sh postgres start DIR   # a server on a Unix socket in DIR; prints the storage URL
#   scripts/local_cluster.sh postgres stop DIR
#
# DIR holds everything (configuration, state, logs, sockets); nothing outside it is changed, except that munged
# needs /run/munge (created, owned by munge). SLURM gets one node with this machine's cores and memory, one
# partition `debug`, no accounting, no cgroups (proctrack/linuxproc). PostgreSQL listens on no TCP port and trusts
# local connections: a test server, never a production one. Install the packages with
#   apt-get install -y slurm-wlm munge postgresql
set -euo pipefail

usage() { echo "usage: $0 {slurm|postgres} {start|stop} DIR" >&2; exit 2; }
[[ $# -eq 3 ]] || usage
what=$1 action=$2 dir=$(mkdir -p "$3" && cd "$3" && pwd)

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...: until the command succeeds
  local seconds=$1 description=$2; shift 2
  for _ in $(seq $((seconds * 5))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  echo "$0: $description did not come up within ${seconds}s" >&2; return 1
}

slurm_start() {
  command -v slurmctld >/dev/null || { echo "$0: slurmctld not found: apt-get install -y slurm-wlm munge" >&2; exit 1; }
  local host cores memory
  host=$(hostname -s)
  cores=$(nproc)
  memory=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 8 / 10 ))
  mkdir -p "$dir"/{state,spool,log,munge}
  # munged: its socket directory must belong to munge; its key comes with the package
  mkdir -p /run/munge && chown munge:munge /run/munge /var/log/munge /var/lib/munge /etc/munge 2>/dev/null || true
  chmod 0755 /run/munge
  if ! pgrep -x munged >/dev/null; then
    runuser -u munge -- munged
  fi
  cat >"$dir/slurm.conf" <<CONF
ClusterName=litvir
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
JobRequeue=1
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldPort=$((6800 + RANDOM % 100))
SlurmdPort=$((6900 + RANDOM % 100))
NodeName=$host CPUs=$cores RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
  export SLURM_CONF=$dir/slurm.conf
  slurmctld -f "$SLURM_CONF"
  slurmd -f "$SLURM_CONF"
  wait_for 30 "the SLURM node" bash -c "sinfo -h -o %T | grep -qE '^(idle|mixed|allocated)'"
  echo "export SLURM_CONF=$SLURM_CONF"
}

slurm_stop() {
  local pidfile
  for pidfile in "$dir/slurmd.pid" "$dir/slurmctld.pid"; do
    [[ -f $pidfile ]] && kill "$(cat "$pidfile")" 2>/dev/null || true
  done
}

postgres_start() {
  local bin=/usr/lib/postgresql/15/bin port=5432
  [[ -x $bin/initdb ]] || bin=$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | tail -1)")
  [[ -x $bin/initdb ]] || { echo "$0: PostgreSQL not found: apt-get install -y postgresql" >&2; exit 1; }
  mkdir -p "$dir/data" "$dir/socket"
  chown -R postgres:postgres "$dir"
  chmod 0700 "$dir/data"
  [[ -f $dir/data/PG_VERSION ]] || runuser -u postgres -- "$bin/initdb" -D "$dir/data" -A trust >"$dir/initdb.log"
  runuser -u postgres -- "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
    -o "-k $dir/socket -p $port -c listen_addresses=''" start >/dev/null
  echo "postgresql+psycopg2://postgres@/postgres?host=$dir/socket&port=$port"
}

postgres_stop() {
  local bin
  bin=$(dirname "$(ls /usr/lib/postgresql/*/bin/pg_ctl 2>/dev/null | tail -1)")
  [[ -f $dir/data/postmaster.pid ]] && runuser -u postgres -- "$bin/pg_ctl" -D "$dir/data" -m fast stop >/dev/null || true
}

case "$what:$action" in
  slurm:start) slurm_start ;;
  slurm:stop) slurm_stop ;;
  postgres:start) postgres_start ;;
  postgres:stop) postgres_stop ;;
  *) usage ;;
esac
