#!/usr/bin/env bash
# Start a real single-node SLURM cluster (munged + slurmctld + slurmd) on this
# machine, installing the Debian packages first if they are missing.
#
# Idempotent: when the daemons are already up with the same configuration it
# only checks that the node is usable and returns.  No systemd needed: the
# daemons are started directly (they daemonize themselves).  Must run as root.
#
#   bash tests/slurm/start-slurm.sh
#
# Environment (all optional):
#   SLURM_START_TIMEOUT  seconds to wait for the node to become idle (60)
#   SLURM_TEST_CPUS      CPUs advertised for the node (default max(nproc, 32)):
#                        how many 1-CPU jobs / array tasks run at once
#   SLURM_MIN_JOB_AGE    seconds a finished job stays visible to squeue (30)
#   SLURM_CLEAN_STATE=1  wipe the controller's saved state (queued jobs, job-id
#                        counter) before starting
#
# Files: config /etc/slurm/slurm.conf (generated from slurm.conf.in beside this
# script), logs /var/log/slurm/{slurmctld,slurmd}.log, finished-job records
# /var/log/slurm/jobcomp.log, state /var/lib/slurm, pid files /run/slurm.
set -euo pipefail

export PATH="$PATH:/usr/sbin:/sbin"
export DEBIAN_FRONTEND=noninteractive

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TEMPLATE="$HERE/slurm.conf.in"
CONF_DIR=/etc/slurm
CONF="$CONF_DIR/slurm.conf"
STATE_DIR=/var/lib/slurm
LOG_DIR=/var/log/slurm
RUN_DIR=/run/slurm
MUNGE_RUN=/run/munge
TIMEOUT="${SLURM_START_TIMEOUT:-60}"
NODE="$(hostname -s)"
PACKAGES=(slurmctld slurmd slurm-client munge)

log() { echo "start-slurm: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root"
[ -f "$TEMPLATE" ] || die "missing $TEMPLATE"
[ -n "$NODE" ] || die "hostname -s is empty"

# ---------------------------------------------------------------- install --
have_binaries() {
    local b
    for b in slurmctld slurmd sbatch squeue sinfo scancel scontrol munged munge unmunge; do
        command -v "$b" >/dev/null 2>&1 || return 1
    done
}

install_packages() {
    have_binaries && return 0
    log "installing ${PACKAGES[*]} (apt-get)"
    # The packages' postinst scripts call invoke-rc.d to start the daemons
    # (which fails without a config and aborts the install). A policy-rc.d
    # that answers 101 tells invoke-rc.d not to start anything.
    local policy=/usr/sbin/policy-rc.d created=0 rc=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 0755 "$policy"
        created=1
    fi
    # apt-get update only when the package lists do not know the packages
    # (fresh machine) or when the install fails (stale lists).
    if ! apt-cache policy slurmctld 2>/dev/null | grep -q 'Candidate: [0-9]'; then
        apt-get update -q || rc=$?
    fi
    if [ "$rc" = 0 ]; then
        apt-get install -y -q --no-install-recommends "${PACKAGES[@]}" || {
            log "apt-get install failed; running apt-get update and retrying"
            apt-get update -q && apt-get install -y -q --no-install-recommends "${PACKAGES[@]}"
        } || rc=$?
    fi
    [ "$created" = 1 ] && rm -f "$policy"
    [ "$rc" = 0 ] || die "could not install ${PACKAGES[*]}"
    have_binaries || die "packages installed but SLURM/munge binaries not found"
}

# ----------------------------------------------------------------- config --
render_config() {
    local ncpu cpus mem_kb mem
    ncpu="$(nproc)"
    cpus="${SLURM_TEST_CPUS:-$(( ncpu > 32 ? ncpu : 32 ))}"
    mem_kb="$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)"
    mem=$(( mem_kb / 1024 ))
    [ "$mem" -gt 0 ] || mem=1024
    sed -e "s|@NODENAME@|$NODE|g" \
        -e "s|@CPUS@|$cpus|g" \
        -e "s|@REALMEMORY@|$mem|g" \
        -e "s|@STATEDIR@|$STATE_DIR|g" \
        -e "s|@LOGDIR@|$LOG_DIR|g" \
        -e "s|@RUNDIR@|$RUN_DIR|g" \
        -e "s|@MAXARRAYSIZE@|100001|g" \
        -e "s|@MAXJOBCOUNT@|200000|g" \
        -e "s|@MINJOBAGE@|${SLURM_MIN_JOB_AGE:-30}|g" \
        "$TEMPLATE"
}

# Writes the config; returns 0 if it changed, 1 if it was already identical.
write_config() {
    local tmp
    tmp="$(mktemp)"
    render_config >"$tmp"
    if grep -q '@[A-Z_]\+@' "$tmp"; then
        rm -f "$tmp"
        die "unfilled placeholder in generated slurm.conf"
    fi
    mkdir -p "$CONF_DIR"
    if [ -f "$CONF" ] && cmp -s "$tmp" "$CONF"; then
        rm -f "$tmp"
        return 1
    fi
    install -m 0644 "$tmp" "$CONF"
    rm -f "$tmp"
    return 0
}

# ---------------------------------------------------------------- daemons --
# pid_alive PIDFILE COMM -> prints the pid if that process runs with that name
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
    for _ in $(seq 1 100); do
        ps -o stat= -p "$pid" 2>/dev/null | grep -qv '^Z' || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
}

munge_ok() { munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; }

start_munge() {
    if munge_ok; then return 0; fi
    stop_pid "$MUNGE_RUN/munged.pid" munged   # alive but not answering
    install -d -o munge -g munge -m 0755 "$MUNGE_RUN"
    install -d -o munge -g munge -m 0700 /etc/munge /var/log/munge
    install -d -o munge -g munge -m 0711 /var/lib/munge
    if [ ! -s /etc/munge/munge.key ]; then
        log "creating /etc/munge/munge.key"
        runuser -u munge -- mungekey -c -k /etc/munge/munge.key
    fi
    chown munge:munge /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
    log "starting munged"
    # --force: a munged killed with the machine leaves its socket behind.
    runuser -u munge -- /usr/sbin/munged --force </dev/null >/dev/null 2>>"$LOG_DIR/munged.stderr" \
        || die "munged failed to start: $(tail -n 5 "$LOG_DIR/munged.stderr" 2>/dev/null)"
    for _ in $(seq 1 100); do
        munge_ok && return 0
        sleep 0.1
    done
    die "munged does not answer (see /var/log/munge/munged.log)"
}

start_slurmctld() {
    pid_alive "$RUN_DIR/slurmctld.pid" slurmctld >/dev/null && return 0
    if [ "${SLURM_CLEAN_STATE:-0}" = 1 ]; then
        log "wiping $STATE_DIR/slurmctld (SLURM_CLEAN_STATE=1)"
        rm -rf "${STATE_DIR:?}/slurmctld"
        install -d -m 0755 "$STATE_DIR/slurmctld"
    fi
    log "starting slurmctld"
    # slurmctld daemonizes itself; stdio to files so that a caller capturing
    # our output is not kept waiting by the daemon.
    slurmctld </dev/null >/dev/null 2>>"$LOG_DIR/slurmctld.stderr" \
        || die "slurmctld failed to start: $(tail -n 5 "$LOG_DIR/slurmctld.stderr" 2>/dev/null)"
}

start_slurmd() {
    pid_alive "$RUN_DIR/slurmd.pid" slurmd >/dev/null && return 0
    log "starting slurmd (node $NODE)"
    SLURMD_STARTED_AT="$(date +%s)"
    slurmd -N "$NODE" </dev/null >/dev/null 2>>"$LOG_DIR/slurmd.stderr" \
        || die "slurmd failed to start: $(tail -n 5 "$LOG_DIR/slurmd.stderr" 2>/dev/null)"
}

diagnostics() {
    log "---- diagnostics ----"
    {
        echo "== sinfo"; sinfo -N -l 2>&1 || true
        echo "== sinfo -R"; sinfo -R 2>&1 || true
        echo "== scontrol show node"; scontrol show node "$NODE" 2>&1 || true
        for f in munged.stderr slurmctld.stderr slurmd.stderr slurmctld.log slurmd.log; do
            [ -s "$LOG_DIR/$f" ] && { echo "== tail $LOG_DIR/$f"; tail -n 40 "$LOG_DIR/$f"; }
        done
        [ -s /var/log/munge/munged.log ] && { echo "== tail munged.log"; tail -n 20 /var/log/munge/munged.log; }
        echo "== processes"
        # shellcheck disable=SC2009
        ps -eo pid,user,stat,args | grep -E '[m]unged|[s]lurm' || true
    } >&2
}

node_state() { sinfo -h -n "$NODE" -o %t 2>/dev/null | head -n 1; }

# True once the slurmd we started has registered with slurmctld (the node's
# state may otherwise be one recovered from a previous run).
slurmd_registered() {
    local t
    [ -n "${SLURMD_STARTED_AT:-}" ] || return 0
    t="$(scontrol -o show node "$NODE" 2>/dev/null | grep -o 'SlurmdStartTime=[^ ]*' | cut -d= -f2)"
    case "$t" in ""|None|Unknown) return 1 ;; esac
    t="$(date -d "$t" +%s 2>/dev/null)" || return 1
    [ "$t" -ge "$SLURMD_STARTED_AT" ]
}

wait_until_usable() {
    local deadline=$(( SECONDS + TIMEOUT )) st="" resumed=0 start=$SECONDS
    while :; do
        st="$(node_state || true)"
        case "$st" in
            idle|mix|alloc|comp)
                if slurmd_registered; then
                    log "node $NODE is $st after $(( SECONDS - start ))s"
                    return 0
                fi ;;
            drain|drng|down|fail|failg)
                # State restored from a previous run (e.g. "Node unexpectedly
                # rebooted"); slurmd is up, so put the node back in service.
                if [ "$resumed" = 0 ] && pid_alive "$RUN_DIR/slurmd.pid" slurmd >/dev/null; then
                    log "node is $st; resuming it"
                    scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true
                    resumed=1
                fi ;;
        esac
        if [ "$SECONDS" -ge "$deadline" ]; then
            log "node $NODE not idle after ${TIMEOUT}s (state: '${st:-no answer}')"
            diagnostics
            return 1
        fi
        sleep 0.5
    done
}

# ------------------------------------------------------------------- main --
install_packages

install -d -m 0755 "$LOG_DIR" "$RUN_DIR" "$STATE_DIR" "$STATE_DIR/slurmctld" "$STATE_DIR/slurmd"

changed=0
SLURMD_STARTED_AT=""
write_config && changed=1
if [ "$changed" = 1 ]; then
    log "wrote $CONF"
    # Node definition etc. changed: restart whatever runs with the old config.
    stop_pid "$RUN_DIR/slurmd.pid" slurmd
    stop_pid "$RUN_DIR/slurmctld.pid" slurmctld
fi

start_munge
start_slurmctld
start_slurmd
wait_until_usable || exit 1
