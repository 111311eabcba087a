#!/usr/bin/env bash
# The capacity record's server and load (results/2026-11-29_cpu_serving_capacity/run.sh: two
# servers, one after the other), with bertg4's default (serving/: freed memory kept in the
# replica) and with glibc's defaults in every process (serving_glibc_default/). About 25 minutes.
set -u
D=$(dirname "$0")
bash "$D/../2026-11-29_cpu_serving_capacity/run.sh" "$D/serving" > "$D/serving_output.txt" 2>&1; RC=$?
BERTG4_KEEP_FREED_MEMORY=0 bash "$D/../2026-11-29_cpu_serving_capacity/run.sh" "$D/serving_glibc_default" \
    > "$D/serving_glibc_default_output.txt" 2>&1 || RC=$?
exit $RC
