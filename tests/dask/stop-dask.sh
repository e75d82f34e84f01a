#!/usr/bin/env bash
# Stop the Dask cluster started by tests/dask/start-dask.sh.
#
#   bash tests/dask/stop-dask.sh [DIR]
#
# DIR as for start-dask.sh (or $DASK_TEST_DIR; default ${TMPDIR:-/tmp}/batchrun-dask).
# Signals only the processes recorded in DIR/*.pid, each with its process group
# (a worker's nanny and its worker subprocess): SIGTERM, then SIGKILL after 10 s.
# Safe to run when nothing runs.  Logs are kept.
set -uo pipefail

DIR="${1:-${DASK_TEST_DIR:-${TMPDIR:-/tmp}/batchrun-dask}}"
[ -d "$DIR" ] || exit 0

log() { echo "stop-dask: $*" >&2; }

pid_alive() {
    local pid
    [ -s "$1" ] || return 1
    pid="$(tr -dc '0-9' <"$1")"
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'dask' || return 1
    echo "$pid"
}

# alive TARGET: "PID" or "-PGID" has a process that is not a zombie (our
# daemons' parent is init, which may reap them late).
alive() {
    case "$1" in
        -*) ps -eo pgid=,stat= | awk -v g="${1#-}" '$1 == g && $2 !~ /^Z/ {f=1} END {exit !f}' ;;
        *) ps -o stat= -p "$1" 2>/dev/null | grep -qv '^Z' ;;
    esac
}

# Each entry is "-PGID" when the process leads its own group (start-dask.sh
# uses setsid, so the group holds a nanny and its worker subprocess), else "PID".
targets=()
# Workers first, so they do not try to reconnect to a vanished scheduler.
for f in "$DIR"/worker-*.pid "$DIR"/scheduler.pid; do
    [ -e "$f" ] || continue
    if pid="$(pid_alive "$f")"; then
        pgid="$(ps -o pgid= -p "$pid" 2>/dev/null | tr -d ' ')"
        if [ "$pgid" = "$pid" ]; then t="-$pid"; else t="$pid"; fi
        log "stopping $(basename "$f" .pid) (pid $pid)"
        kill -TERM -- "$t" 2>/dev/null || true
        targets+=("$t")
    else
        # Leader gone (e.g. killed -9) but its group may hold an orphaned
        # worker subprocess: signal the group if its members are python/dask.
        pid="$(tr -dc '0-9' <"$f")"
        [ -n "$pid" ] || continue
        if ps -eo pgid=,stat=,args= | awk -v g="$pid" '$1 == g && $2 !~ /^Z/' | grep -qE 'dask|python'; then
            log "stopping leftover process group of $(basename "$f" .pid) (pgid $pid)"
            kill -TERM -- "-$pid" 2>/dev/null || true
            targets+=("-$pid")
        fi
    fi
done

for _ in $(seq 1 100); do
    alive=0
    for t in "${targets[@]}"; do
        alive "$t" && alive=1
    done
    [ "$alive" = 0 ] && break
    sleep 0.1
done
for t in "${targets[@]}"; do
    if alive "$t"; then
        log "$t still alive after 10s; sending SIGKILL"
        kill -KILL -- "$t" 2>/dev/null || true
    fi
done

rm -f "$DIR"/*.pid "$DIR/scheduler-address" "$DIR/scheduler.json"
exit 0
