#!/bin/sh
# tree.sh DEPTH NAME READY_DIR GATE
#
# A chain of DEPTH nested shells, each with a background subshell of its own;
# the innermost ignores SIGTERM (and so do the sleeps it starts). Touches
# READY_DIR/NAME once the innermost is in place. Every process waits for the
# file GATE to exist, for about 60 seconds at most, so nothing outlives a
# failed test for long.
depth=$1 name=$2 ready=$3 gate=$4
wait_gate() {
    n=0
    while [ ! -e "$gate" ] && [ "$n" -lt 1200 ]; do sleep 0.05; n=$((n + 1)); done
}
if [ "$depth" -le 1 ]; then
    trap '' TERM
    touch "$ready/$name"
    wait_gate
    exit 0
fi
sh "$0" $((depth - 1)) "$name" "$ready" "$gate" &
(wait_gate) &
wait_gate
wait
