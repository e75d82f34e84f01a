#!/usr/bin/env bash
# Stop the single-node SLURM cluster started by start-slurm.sh.
#
#   bash tests/slurm/stop-slurm.sh
#
# By default every queued/running job is cancelled first (bounded wait), so no
# job processes outlive the daemons.  SLURM_STOP_KEEP_JOBS=1 skips that: the
# controller then saves the jobs and recovers them at the next start (jobs
# that were running are then reported as failed).  SLURM_STOP_KEEP_MUNGE=1
# leaves munged running.  Only the processes named in the pid files under
# /run/slurm and /run/munge are signalled.  Safe to run when nothing runs.
set -uo pipefail

export PATH="$PATH:/usr/sbin:/sbin"
RUN_DIR=/run/slurm
MUNGE_RUN=/run/munge

log() { echo "stop-slurm: $*" >&2; }

pid_alive() {
    local pid
    [ -s "$1" ] || return 1
    pid="$(tr -dc '0-9' <"$1")"
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ] || return 1
    echo "$pid"
}

stop_pid() { # stop_pid PIDFILE COMM
    local pid
    pid="$(pid_alive "$1" "$2")" || return 0
    log "stopping $2 (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 150); do
        ps -o stat= -p "$pid" 2>/dev/null | grep -qv '^Z' || { rm -f "$1"; return 0; }
        sleep 0.1
    done
    log "$2 still alive after 15s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$1"
}

if [ "${SLURM_STOP_KEEP_JOBS:-0}" != 1 ] && pid_alive "$RUN_DIR/slurmctld.pid" slurmctld >/dev/null \
        && command -v squeue >/dev/null 2>&1; then
    jobs="$(timeout 10 squeue -h -o %F 2>/dev/null | sort -u | tr '\n' ' ')"
    if [ -n "${jobs// /}" ]; then
        log "cancelling jobs: $jobs"
        # shellcheck disable=SC2086
        timeout 10 scancel $jobs 2>/dev/null || true
        for _ in $(seq 1 50); do
            [ -z "$(timeout 10 squeue -h -o %i 2>/dev/null)" ] && break
            sleep 0.2
        done
    fi
fi

stop_pid "$RUN_DIR/slurmd.pid" slurmd
stop_pid "$RUN_DIR/slurmctld.pid" slurmctld
if [ "${SLURM_STOP_KEEP_MUNGE:-0}" != 1 ]; then
    stop_pid "$MUNGE_RUN/munged.pid" munged
fi
exit 0
