#!/usr/bin/env bash
# The long-levels record's server at 120 requests/s for up to 55 s (up to 7,000 timed
# requests), every request kept, with every process's CPU time on the machine sampled every
# 50 ms (sampler.py) from before the server starts until it has stopped: once per NAME given,
# each with the environment variables that follow it (NAME=default: none). Run from the
# repository root on a quiet machine (about 2 minutes a run):
#   bash results/2026-12-02_cpu_serving_stall/run.sh OUT NAME [VAR=VALUE ...] [-- NAME ...]
set -u
OUT=$1
shift
HERE=$(dirname "$0")
LOAD="--rates 120 --requests 7000 --duration 55 --keep-requests"
RC=0
while [ $# -gt 0 ]; do
    name=$1
    shift
    vars=()
    while [ $# -gt 0 ] && [ "$1" != "--" ]; do vars+=("$1"); shift; done
    [ $# -gt 0 ] && shift
    mkdir -p "$OUT/$name"
    python "$HERE/sampler.py" "$OUT/$name/cpu.jsonl" --duration 400 &
    SAMPLER=$!
    env "${vars[@]}" bash -c ". '$HERE/../../scripts/serve_ready.sh'; serve_and_load '$name' '$OUT/$name' \"\$RECORD_SERVE --direct-ingress\" $LOAD" \
        > "$OUT/$name.txt" 2>&1 || RC=$?
    kill -TERM $SAMPLER; wait $SAMPLER
    echo "${vars[*]}" > "$OUT/$name/environment.txt"
done
exit $RC
