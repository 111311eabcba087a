#!/usr/bin/env bash
# Real traffic beside the peers, twice on the same machine: peers_default/ with each peer as its
# users run it (glibc's defaults; bertg4's pt engine keeps freed memory, its default), and
# peers_same_allocator/ with GLIBC_TUNABLES giving every process, peers included, the setting
# bertg4 makes. Run from the repository root on a quiet machine:
#   bash results/2026-12-01_cpu_allocator/run_traffic.sh      # about 12 minutes
set -eu
D=$(dirname "$0")
ARGS="--model embedded --task SST --task embedding --engine pt --recipe baseline --recipe onednn-fp32
      --recipe int8 --recipe onednn-int8 --traffic sst2-dev --padding packed --batch-sizes 32
      --repeats 5 --peers --fresh --no-progress"
bertg4 bench $ARGS --output "$D/peers_default" > "$D/peers_default.txt" 2>&1
GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=2147483647 \
    bertg4 bench $ARGS --output "$D/peers_same_allocator" > "$D/peers_same_allocator.txt" 2>&1
# bertg4 alone with glibc's defaults (BERTG4_KEEP_FREED_MEMORY=0), no peers
BERTG4_KEEP_FREED_MEMORY=0 bertg4 bench --model embedded --task SST --engine pt --recipe baseline \
    --recipe onednn-fp32 --recipe int8 --recipe onednn-int8 --traffic sst2-dev --padding packed \
    --batch-sizes 32 --repeats 5 --fresh --no-progress --output "$D/pt_glibc_default" > "$D/pt_glibc_default.txt" 2>&1
