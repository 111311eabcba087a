#!/usr/bin/env bash
# The direct-ingress serving record's server and load, with the capacity measured in two runs
# (the second near the first estimate), on two servers one after the other; each server is
# started by `bertg4 serve`, loaded by `bertg4 loadtest`, and stopped by its pid.
# Run from the repository root on a quiet machine:
#   bash results/2026-11-29_cpu_serving_capacity/run.sh [OUT]      # about 15 minutes
set -u
OUT=${1:-results/2026-11-29_cpu_serving_capacity}
. "$(dirname "$0")/../../scripts/serve_ready.sh"
serve_and_load run1 "$OUT/run1" "$RECORD_SERVE --direct-ingress" $RECORD_LOAD; RC=$?
serve_and_load run2 "$OUT/run2" "$RECORD_SERVE --direct-ingress" $RECORD_LOAD || RC=$?
exit $RC
