#!/usr/bin/env bash
# Where the two cores go: the records' MiniLM server (max batch 4, wait 5 ms, two torch threads,
# direct ingress, metrics off) in a closed loop of 8 clients, every process's CPU time before and
# after, beside the same model offline in the load generator's process (cpu_split.py), three runs.
# Run from the repository root, in the environment where `bertg4` runs, on a quiet machine:
#   bash results/2026-12-04_cpu_serving_cpu_split/run.sh [OUT]      # about 3 minutes
set -u
OUT=${1:-results/2026-12-04_cpu_serving_cpu_split}
HERE=$(dirname "$0")
. "$HERE/../../scripts/serve_ready.sh"
mkdir -p "$OUT"
for n in 1 2 3; do
    log=$(mktemp)
    start_server "$log" $RECORD_SERVE --direct-ingress --port $((18500 + RANDOM % 400))
    python "$HERE/cpu_split.py" "$(direct_url "$log")" --out "$OUT/run$n.json" > "$OUT/run$n.txt" 2>&1
    kill -TERM $SPID; wait $SPID
done
