#!/usr/bin/env bash
# Stop the single-node SLURM that .ci/slurm/up.sh started: slurmd, slurmctld and munged (the
# latter only if up.sh started it), each by the PID in its pid file, and only if that PID is
# still the daemon it names. Queued and running jobs are lost; state and logs stay in the state
# folder. Safe to run when nothing is up.
set -euo pipefail

STATE=${REFINERY_SLURM_STATE:-/var/lib/refinery-slurm}

stop() {  # stop PIDFILE COMM
    local pid
    [ -s "$1" ] || return 0
    pid=$(tr -dc 0-9 <"$1")
    if [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ]; then
        echo "slurm-down: stopping $2 ($pid)" >&2
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 100); do
            [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ] || break
            sleep 0.1
        done
        if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ]; then
            echo "slurm-down: $2 ($pid) ignored SIGTERM for 10 s; sending SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$1"
}

stop "$STATE/slurmd.pid" slurmd
stop "$STATE/slurmctld.pid" slurmctld
stop "$STATE/munged.pid" munged

# The slurm executor plugin runs `scontrol show config` whenever Snakemake starts (any
# executor); with a slurm.conf naming a controller that is gone, that waits 10 s for a timeout.
# Put up.sh's file aside (up.sh writes it again), so Snakemake starts fast once SLURM is down.
CONF=/etc/slurm/slurm.conf
if [ -f "$CONF" ] && grep -q "written by s390x-wheel-refinery" "$CONF"; then
    mkdir -p "$STATE"
    mv -f "$CONF" "$STATE/slurm.conf.down"
    echo "slurm-down: moved $CONF to $STATE/slurm.conf.down" >&2
fi
