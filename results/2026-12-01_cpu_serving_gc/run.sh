#!/usr/bin/env bash
# The capacity record's server and load (results/2026-11-29_cpu_serving_capacity), twice: frozen/
# with bertg4's default (the replica's warmed-up heap frozen out of Python's garbage collector),
# unfrozen/ with --no-freeze-gc; each server started by `bertg4 serve`, loaded by
# `bertg4 loadtest`, stopped by its pid. Run from the repository root on a quiet machine:
#   bash results/2026-12-01_cpu_serving_gc/run.sh [OUT]      # about 5 minutes
set -u
OUT=${1:-results/2026-12-01_cpu_serving_gc}
. "$(dirname "$0")/../../scripts/serve_ready.sh"
serve_and_load frozen "$OUT/frozen" "$RECORD_SERVE --direct-ingress" $RECORD_LOAD > "$OUT/frozen.txt" 2>&1; RC=$?
serve_and_load unfrozen "$OUT/unfrozen" "$RECORD_SERVE --direct-ingress --no-freeze-gc" $RECORD_LOAD \
    > "$OUT/unfrozen.txt" 2>&1 || RC=$?
exit $RC
