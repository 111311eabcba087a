#!/usr/bin/env bash
# The metrics-off record's server and load again (results/2026-12-03_cpu_serving_metrics_off: MiniLM,
# max batch 4, wait 5 ms, two torch threads, direct ingress; 20, 35, 50, 65 and 80 % of the
# closed-loop capacity, then --find-max at a p99 of 5 x the single-request latency; up to 1,000
# timed requests a level, at most 30 s), now that --find-max starts from what those levels bracket.
# Run from the repository root, in the environment where `bertg4` runs, on a quiet machine:
#   bash results/2026-12-03_cpu_serving_find_max_bracket/run.sh [OUT]
# Then: python results/2026-12-02_cpu_serving_blocked_wait/summary.py OUT > OUT/summary.txt
set -u
OUT=${1:-results/2026-12-03_cpu_serving_find_max_bracket}
. "$(dirname "$0")/../../scripts/serve_ready.sh"
LOAD="--capacity-fractions 0.2,0.35,0.5,0.65,0.8 --find-max --price-per-hour 0.17 --offline --requests 1000 --duration 30
      --keep-requests"
serve_and_load_runs "$OUT" 4 "$RECORD_SERVE --direct-ingress" $LOAD
