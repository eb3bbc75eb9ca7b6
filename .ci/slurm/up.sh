#!/usr/bin/env bash
# A real single-node SLURM cluster (munge + slurmctld + slurmd) on this machine, for CI and for
# trying `refinery --profile slurm` on a laptop or a LinuxONE guest.
#
#   .ci/slurm/up.sh           install (apt-get) if needed, configure, start, wait until idle
#   .ci/slurm/up.sh --check   exit 0 if the cluster is up and idle, 1 if not; changes nothing
#   .ci/slurm/down.sh         stop the daemons this script started, by PID
#
# Idempotent: when the daemons run with the current configuration it returns in well under a
# second. Exit codes: 0 up; 1 failed; 3 the packages are missing and apt-get is unavailable
# (the only case in which the SLURM tests may skip instead of fail).
#
# Why the configuration looks like this (measured with Debian's slurm-wlm 22.05 and
# snakemake-executor-plugin-slurm 2.8):
# - the jobstep plugin drops SLURM_CONF, so the file must be /etc/slurm/slurm.conf;
# - no accounting database: the plugin then polls squeue, which only sees a finished job while
#   slurmctld keeps it, hence MinJobAge=300; finished jobs are also appended to a job
#   completion log (jobcomp/filetxt), the tests' record of what ran as a SLURM job;
# - containers and VMs without a delegated cgroup tree: proctrack/linuxproc and task/none;
# - ReturnToService=2: a node that was down (a restart, a killed slurmd) comes back by itself.
set -euo pipefail

STATE=${REFINERY_SLURM_STATE:-/var/lib/refinery-slurm}
CONF=/etc/slurm/slurm.conf
MARK="# written by s390x-wheel-refinery .ci/slurm/up.sh"
PARTITION=${REFINERY_SLURM_PARTITION:-refinery}
PACKAGES=(munge slurmctld slurmd slurm-client)

log() { echo "slurm-up: $*" >&2; }

alive() {  # alive PIDFILE COMM: the pid file names a running process called COMM
    local pid
    [ -s "$1" ] || return 1
    pid=$(tr -dc 0-9 <"$1")
    [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ]
}

node_state() { sinfo -h -N -o %T 2>/dev/null | head -n1 | tr -d '*~#!%$@^-'; }

is_up() {
    alive "$STATE/slurmctld.pid" slurmctld && alive "$STATE/slurmd.pid" slurmd || return 1
    case "$(node_state)" in idle|mixed|allocated) return 0 ;; *) return 1 ;; esac
}

if [ "${1:-}" = --check ]; then
    is_up && exit 0
    exit 1
fi

started=$(date +%s)

# -- packages ------------------------------------------------------------------------------
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
    || ! command -v munged >/dev/null || ! command -v sinfo >/dev/null; then
    if ! command -v apt-get >/dev/null; then
        log "slurmctld/slurmd/munge are not installed and apt-get is unavailable"
        exit 3
    fi
    [ "$(id -u)" = 0 ] || { log "installing packages needs root"; exit 1; }
    export DEBIAN_FRONTEND=noninteractive
    apt_install() {
        apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=300 "${PACKAGES[@]}"
    }
    mkdir -p "$STATE"
    log "installing ${PACKAGES[*]}"
    if ! apt_install >"$STATE/apt.log" 2>&1; then
        log "apt-get install failed; running apt-get update first"
        apt-get update -q -o DPkg::Lock::Timeout=300 >>"$STATE/apt.log" 2>&1
        apt_install >>"$STATE/apt.log" 2>&1 || { cat "$STATE/apt.log" >&2; exit 1; }
    fi
fi

mkdir -p "$STATE"/{ctld,spool} /etc/slurm
chmod 755 "$STATE"

# -- munge ---------------------------------------------------------------------------------
if [ ! -s /etc/munge/munge.key ]; then
    log "creating a munge key"
    mkdir -p /etc/munge
    if command -v mungekey >/dev/null; then
        mungekey --create --keyfile /etc/munge/munge.key
    else
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
fi
chown munge:munge /etc/munge/munge.key 2>/dev/null || true
chmod 400 /etc/munge/munge.key
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge 2>/dev/null || true
if ! munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
    if alive "$STATE/munged.pid" munged; then
        kill "$(cat "$STATE/munged.pid")" 2>/dev/null || true
        sleep 1
    fi
    log "starting munged"
    if id munge >/dev/null 2>&1; then
        runuser -u munge -- munged --force
    else
        munged --force
    fi
    for _ in $(seq 50); do
        [ -s /run/munge/munged.pid ] && break
        sleep 0.1
    done
    cp /run/munge/munged.pid "$STATE/munged.pid"
    munge -n </dev/null | unmunge >/dev/null
fi

# -- slurm.conf ----------------------------------------------------------------------------
if [ -f "$CONF" ] && ! grep -qF "$MARK" "$CONF" && [ -z "${REFINERY_SLURM_FORCE:-}" ]; then
    log "$CONF was not written by this script; not touching it (REFINERY_SLURM_FORCE=1 does)"
    exit 1
fi
host=$(hostname -s)
# `slurmd -C` prints this node's NodeName line (CPUs, sockets, cores, memory); keep it whole
node=$(slurmd -C | grep '^NodeName=' | sed 's/ *$//')
new=$(mktemp)
cat >"$new" <<CONF
$MARK
# Single node: slurmctld and slurmd on $host. Regenerated on every run of up.sh.
ClusterName=refinery
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=none
# no delegated cgroups in containers or plain VMs
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
# no slurmdbd: the executor plugin polls squeue, which needs finished jobs kept 5 minutes
AccountingStorageType=accounting_storage/none
MinJobAge=300
# every finished job, one line each: what ran as a SLURM job (tests read it)
JobCompType=jobcomp/filetxt
JobCompLoc=$STATE/jobcomp.log
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# a job that asks for no memory must not take the whole node
DefMemPerCPU=1024
SchedulerType=sched/backfill
ReturnToService=2
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldTimeout=30
SlurmdTimeout=60
InactiveLimit=0
KillWait=10
Waittime=0
$node NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
changed=0
if ! cmp -s "$new" "$CONF"; then
    changed=1
    install -m 644 "$new" "$CONF"
    log "wrote $CONF"
fi
rm -f "$new"

if [ "$changed" = 0 ] && is_up; then
    log "up (already running)"
    exit 0
fi

# -- daemons -------------------------------------------------------------------------------
if [ "$changed" = 1 ]; then
    # a new configuration: restart whatever runs with the old one
    for d in slurmd slurmctld; do
        if alive "$STATE/$d.pid" "$d"; then
            kill "$(cat "$STATE/$d.pid")"
            for _ in $(seq 100); do alive "$STATE/$d.pid" "$d" || break; sleep 0.1; done
        fi
    done
fi
if ! alive "$STATE/slurmctld.pid" slurmctld; then
    log "starting slurmctld"
    slurmctld
fi
if ! alive "$STATE/slurmd.pid" slurmd; then
    log "starting slurmd"
    slurmd
fi

for _ in $(seq 120); do
    state=$(node_state)
    case "$state" in
        idle|mixed|allocated)
            log "up in $(( $(date +%s) - started )) s: node $host $state, partition $PARTITION"
            exit 0 ;;
        down|drained|draining|drain)
            scontrol update NodeName="$host" State=RESUME >/dev/null 2>&1 || true ;;
    esac
    sleep 0.5
done
log "the node did not become idle within 60 s (state: ${state:-none}); daemon logs follow"
tail -n 20 "$STATE/slurmctld.log" "$STATE/slurmd.log" >&2 || true
exit 1
