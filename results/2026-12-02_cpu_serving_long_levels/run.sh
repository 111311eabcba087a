#!/usr/bin/env bash
# The server of results/2026-12-02_cpu_serving_blocked_wait (MiniLM, max batch 4, wait 5 ms, two
# torch threads, direct ingress), loaded at the same five fractions of its closed-loop capacity,
# with up to five times the timed requests a level: up to 5,000, at most 90 s. Four runs, each
# with its own server. Every request is kept (requests.jsonl.gz). No --find-max: these runs ask
# only whether the simulator's misses of the earlier record were chance or the model's.
# Run from the repository root on a quiet machine:
#   bash results/2026-12-02_cpu_serving_long_levels/run.sh [OUT]      # about 22 minutes
set -u
OUT=${1:-results/2026-12-02_cpu_serving_long_levels}
. "$(dirname "$0")/../../scripts/serve_ready.sh"
LOAD="--capacity-fractions 0.2,0.35,0.5,0.65,0.8 --price-per-hour 0.17 --offline --requests 5000 --duration 90
      --keep-requests"
serve_and_load_runs "$OUT" 4 "$RECORD_SERVE --direct-ingress" $LOAD
