#!/usr/bin/env bash
# Start a real local Dask cluster for tests: one `dask scheduler` on 127.0.0.1
# and two `dask worker` processes (1 thread each), all in the background.
#
#   bash tests/dask/start-dask.sh [DIR]
#
# DIR (or $DASK_TEST_DIR; default ${TMPDIR:-/tmp}/batchrun-dask) receives:
#   scheduler-address   the address, e.g. tcp://127.0.0.1:40123 (also printed on stdout)
#   scheduler.json      dask scheduler file (for Client(scheduler_file=...))
#   scheduler.log, worker-N.log, *.pid, worker-N/ (worker local directories)
#
# Environment (all optional):
#   DASK_SCHEDULER_PORT  port for the scheduler (default 0: the scheduler picks a free one)
#   DASK_NWORKERS        number of worker processes (2)
#   DASK_START_TIMEOUT   seconds to wait for the scheduler and all workers (60)
#   DASK_PYTHON          python with `distributed` installed (default: the one
#                        that runs the `dask` command found on PATH)
#
# Nothing is installed here: `dask` (dask[distributed]) must already be on
# PATH.  Idempotent: if the cluster recorded in DIR is up, it only prints the
# address.  Only loopback (127.0.0.1) is used, also for the HTTP
# (health/metrics) servers that dask starts even with --no-dashboard.
# Stop with tests/dask/stop-dask.sh [DIR].
set -euo pipefail

DIR="${1:-${DASK_TEST_DIR:-${TMPDIR:-/tmp}/batchrun-dask}}"
PORT="${DASK_SCHEDULER_PORT:-0}"
NWORKERS="${DASK_NWORKERS:-2}"
TIMEOUT="${DASK_START_TIMEOUT:-60}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

log() { echo "start-dask: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

DASK="$(command -v dask)" || die "'dask' not on PATH (install the project's extras with dask[distributed])"
if [ -n "${DASK_PYTHON:-}" ]; then
    PY="$DASK_PYTHON"
else
    PY="$(head -n 1 "$DASK" | sed -n 's|^#![[:space:]]*||p' | awk '{print $1}')"
    case "$PY" in */env) PY="python3" ;; esac
    [ -n "$PY" ] && command -v "$PY" >/dev/null 2>&1 || PY="python3"
fi
"$PY" -c 'import distributed' 2>/dev/null || die "$PY cannot import distributed (set DASK_PYTHON)"

mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"

pid_alive() { # pid_alive PIDFILE -> prints pid if it is a live dask process
    local pid
    [ -s "$1" ] || return 1
    pid="$(tr -dc '0-9' <"$1")"
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'dask' || return 1
    echo "$pid"
}

# Python snippet: wait (bounded) until N workers are connected to ADDRESS.
wait_workers() { # wait_workers ADDRESS N SECONDS
    timeout "$(( $3 + 10 ))" "$PY" - "$1" "$2" "$3" <<'EOF'
import sys
from distributed import Client
addr, n, t = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
with Client(addr, timeout=max(t, 5)) as c:
    c.wait_for_workers(n, timeout=t)
    print(len(c.scheduler_info()["workers"]))
EOF
}

# --- already running? ------------------------------------------------------
if pid_alive "$DIR/scheduler.pid" >/dev/null && [ -s "$DIR/scheduler-address" ]; then
    all=1
    for i in $(seq 0 $(( NWORKERS - 1 ))); do
        pid_alive "$DIR/worker-$i.pid" >/dev/null || all=0
    done
    if [ "$all" = 1 ] && wait_workers "$(cat "$DIR/scheduler-address")" "$NWORKERS" 10 >/dev/null 2>&1; then
        log "already running"
        cat "$DIR/scheduler-address"
        exit 0
    fi
fi
# Something is missing or stale: start from scratch.
bash "$HERE/stop-dask.sh" "$DIR" >/dev/null 2>&1 || true
rm -f "$DIR/scheduler.json" "$DIR/scheduler-address" "$DIR"/*.pid

fail() {
    log "$1"
    for f in "$DIR"/scheduler.log "$DIR"/worker-*.log; do
        [ -f "$f" ] && { echo "== tail $f" >&2; tail -n 30 "$f" >&2; }
    done
    bash "$HERE/stop-dask.sh" "$DIR" >/dev/null 2>&1 || true
    exit 1
}

# --- scheduler ---------------------------------------------------------------
# setsid: own process group (stop-dask.sh signals the group, which includes the
# nanny's worker subprocess) and no tie to the caller's terminal.
log "starting scheduler (logs in $DIR)"
setsid "$DASK" scheduler \
    --host 127.0.0.1 --port "$PORT" --no-dashboard --dashboard-address 127.0.0.1:0 \
    --scheduler-file "$DIR/scheduler.json" \
    </dev/null >"$DIR/scheduler.log" 2>&1 &
# In a non-interactive shell setsid execs in place, so $! is dask's own pid.
echo $! >"$DIR/scheduler.pid"

deadline=$(( SECONDS + TIMEOUT ))
ADDR=""
while [ -z "$ADDR" ]; do
    if [ -s "$DIR/scheduler.json" ]; then
        ADDR="$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["address"])' \
                 "$DIR/scheduler.json" 2>/dev/null || true)"
    fi
    [ -n "$ADDR" ] && break
    [ "$SECONDS" -ge "$deadline" ] && fail "scheduler did not start within ${TIMEOUT}s"
    sleep 0.2
done
case "$ADDR" in tcp://127.0.0.1:*) ;; *) fail "unexpected scheduler address '$ADDR'" ;; esac
echo "$ADDR" >"$DIR/scheduler-address"
log "scheduler at $ADDR"

# --- workers -----------------------------------------------------------------
for i in $(seq 0 $(( NWORKERS - 1 ))); do
    mkdir -p "$DIR/worker-$i"
    setsid "$DASK" worker "$ADDR" \
        --name "test-worker-$i" --nthreads 1 --nworkers 1 \
        --host 127.0.0.1 --no-dashboard --dashboard-address 127.0.0.1:0 \
        --local-directory "$DIR/worker-$i" --death-timeout 60 \
        </dev/null >"$DIR/worker-$i.log" 2>&1 &
    echo $! >"$DIR/worker-$i.pid"
done

left=$(( deadline - SECONDS ))
[ "$left" -gt 5 ] || left=5
if ! n="$(wait_workers "$ADDR" "$NWORKERS" "$left" 2>>"$DIR/wait.log")"; then
    fail "workers did not all connect within ${TIMEOUT}s (see $DIR/wait.log)"
fi
log "$n workers connected"
echo "$ADDR"
