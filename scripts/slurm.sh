#!/usr/bin/env bash
# A single-node Slurm (+ munge) on localhost, for tests and for trying the submitit_slurm launcher.
#
#   scripts/slurm.sh install   apt-get install slurmd slurmctld munge (root; skipped when present)
#   scripts/slurm.sh start     write the config under $ATTNLAB_SLURM_DIR, start munged, slurmctld, slurmd;
#                              returns once the node is idle (no-op when already up)
#   scripts/slurm.sh stop      scontrol shutdown, then munged by its pid (no-op when down)
#   scripts/slurm.sh status    sinfo; exit 0 when the node answers, 3 when down
#   scripts/slurm.sh env       print `export SLURM_CONF=...` (clients: eval "$(scripts/slurm.sh env)")
#
# Everything (slurm.conf, munge key and socket, spool, state, logs, pid files) lives in
# $ATTNLAB_SLURM_DIR (default /tmp/attnlab-slurm), never in the checkout or /etc. Needs root and
# no systemd. Ports: $ATTNLAB_SLURM_PORT (slurmctld, default 6817) and the next one (slurmd).
set -euo pipefail

STATE=${ATTNLAB_SLURM_DIR:-/tmp/attnlab-slurm}
PORT=${ATTNLAB_SLURM_PORT:-6817}
CONF=$STATE/etc/slurm.conf
MUNGE_DIR=$STATE/munge
MUNGE_SOCKET=$MUNGE_DIR/run/munge.socket
PIDS=$STATE/run
MUNGED_PID=$MUNGE_DIR/run/munged.pid
NODE=$(hostname -s)
PARTITION=debug
export SLURM_CONF=$CONF

log() { echo "slurm.sh: $*" >&2; }
die() { echo "error: slurm.sh: $*" >&2; exit 1; }

have_binaries() {
  command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
    && command -v mungekey >/dev/null && command -v sinfo >/dev/null
}

cmd_install() {
  if have_binaries; then log "slurmd, slurmctld and munge already installed"; return 0; fi
  [ "$(id -u)" = 0 ] || die "install needs root (apt-get)"
  # Keep the packages' init scripts from starting daemons with the system-wide config.
  local policy=/usr/sbin/policy-rc.d made_policy=
  if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod 755 "$policy"; made_policy=1; fi
  local rc=0
  export DEBIAN_FRONTEND=noninteractive
  { apt-get install -y -qq slurmd slurmctld munge >/dev/null 2>&1 \
      || { apt-get update -qq >/dev/null && apt-get install -y -qq slurmd slurmctld munge >/dev/null; }; } || rc=$?
  [ -z "$made_policy" ] || rm -f "$policy"
  [ "$rc" = 0 ] || die "apt-get install slurmd slurmctld munge failed (exit $rc)"
  have_binaries || die "installed, but slurmctld/slurmd/munged/sinfo are not on PATH"
  log "installed $(slurmctld -V)"
}

node_state() { sinfo -h -n "$NODE" -o %T 2>/dev/null | head -1; }

read_pid() { cat "$1" 2>/dev/null; }  # empty when the daemon has removed its pid file
pid_alive() { local pid; pid=$(read_pid "$1") && [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; }

write_conf() {
  local cpus mem
  cpus=$(nproc)
  # Slurm drains a node that reports less memory than configured: declare 90% of what is there.
  mem=$(awk '/^MemTotal:/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)
  mkdir -p "$STATE/etc" "$STATE/spool/ctld" "$STATE/spool/d" "$STATE/log" "$PIDS"
  cat >"$CONF" <<EOF
# Written by scripts/slurm.sh: a single-node test cluster on localhost.
ClusterName=attnlab
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCKET
StateSaveLocation=$STATE/spool/ctld
SlurmdSpoolDir=$STATE/spool/d
SlurmctldPidFile=$PIDS/slurmctld.pid
SlurmdPidFile=$PIDS/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
KillWait=5
InactiveLimit=0
MinJobAge=600
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
}

start_munge() {
  if pid_alive "$MUNGED_PID"; then return 0; fi
  mkdir -p "$MUNGE_DIR/run" "$MUNGE_DIR/log" "$MUNGE_DIR/lib"
  [ -f "$MUNGE_DIR/munge.key" ] || mungekey -c -k "$MUNGE_DIR/munge.key"
  chown -R munge:munge "$MUNGE_DIR"
  chmod 700 "$MUNGE_DIR" "$MUNGE_DIR/lib" "$MUNGE_DIR/log"
  chmod 755 "$MUNGE_DIR/run"
  chmod 400 "$MUNGE_DIR/munge.key"
  chmod 711 "$MUNGE_DIR"  # slurm (root) and job users reach the socket through it
  runuser -u munge -- munged --key-file="$MUNGE_DIR/munge.key" --socket="$MUNGE_SOCKET" \
    --pid-file="$MUNGED_PID" --log-file="$MUNGE_DIR/log/munged.log" \
    --seed-file="$MUNGE_DIR/lib/munged.seed"
}

wait_for_node() {
  local state=""
  for _ in $(seq 1 60); do
    state=$(node_state)
    case "$state" in
      idle|mixed|allocated|completing) return 0 ;;
      down*|drain*) scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true ;;
    esac
    sleep 1
  done
  die "node $NODE not idle after 60 s (state: ${state:-no answer}); logs: $STATE/log/"
}

cmd_start() {
  have_binaries || die "Slurm is not installed: run scripts/slurm.sh install"
  [ "$(id -u)" = 0 ] || die "start needs root"
  if pid_alive "$PIDS/slurmctld.pid" && pid_alive "$PIDS/slurmd.pid" && [ "$(node_state)" != "" ]; then
    log "already running (SLURM_CONF=$CONF)"; wait_for_node; return 0
  fi
  mkdir -p "$STATE"
  chmod 755 "$STATE"
  write_conf
  start_munge
  pid_alive "$PIDS/slurmctld.pid" || slurmctld -f "$CONF"
  pid_alive "$PIDS/slurmd.pid" || slurmd -f "$CONF" -N "$NODE"
  wait_for_node
  log "up: node $NODE $(node_state), partition $PARTITION (SLURM_CONF=$CONF)"
}

stop_pid() {  # stop_pid NAME PIDFILE: wait for the daemon to go, then TERM, then KILL
  local name=$1 file=$2 pid
  pid=$(read_pid "$file") && [ -n "$pid" ] || return 0
  for sig in 0 TERM KILL; do
    [ "$sig" = 0 ] || kill -s "$sig" "$pid" 2>/dev/null || true
    for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || { rm -f "$file"; return 0; }; sleep 0.5; done
    log "$name (pid $pid) still running after SIG${sig/0/NONE}"
  done
}

cmd_stop() {
  if [ -f "$CONF" ] && { pid_alive "$PIDS/slurmctld.pid" || pid_alive "$PIDS/slurmd.pid"; }; then
    scontrol shutdown >/dev/null 2>&1 || log "scontrol shutdown failed; stopping by pid"
  fi
  stop_pid slurmctld "$PIDS/slurmctld.pid"
  stop_pid slurmd "$PIDS/slurmd.pid"
  if pid_alive "$MUNGED_PID"; then kill "$(read_pid "$MUNGED_PID")" 2>/dev/null || true; fi
  stop_pid munged "$MUNGED_PID"
  log "stopped"
}

cmd_status() {
  if [ -f "$CONF" ] && [ -n "$(node_state)" ]; then sinfo; return 0; fi
  log "not running (SLURM_CONF=$CONF)"; return 3
}

case "${1:-}" in
  install) cmd_install ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  env) echo "export SLURM_CONF=$CONF" ;;
  *) echo "usage: $0 {install|start|stop|status|env}" >&2; exit 2 ;;
esac
