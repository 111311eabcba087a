"""Freed activations are reused from the heap instead of page-faulting new pages
(bertg4.system.keep_freed_memory), and every CPU predictor and record says how memory was held."""
import os
import platform
import subprocess
import sys

import pytest
import torch

from bertg4 import system
from bertg4.bench import record_fields
from bertg4.pt.engine import memory_notes

glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")

# 48 MiB: above the largest threshold (32 MiB) below which glibc may serve a block from its heap,
# so with glibc's defaults every such block is a fresh mmap, faulted in page by page
_FAULTS = r"""
import resource, sys, torch
from bertg4 import system
print(system.keep_freed_memory())
n = 48 * 2**20 // 4
for _ in range(20):  # while the heap grows to hold these blocks between the small ones, they fault
    x = torch.empty(n); x.fill_(1.0); del x
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(8):
    x = torch.empty(n); x.fill_(1.0); del x
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 8)
"""


def _faults_per_block(**env):
    out = subprocess.run([sys.executable, "-c", _FAULTS], capture_output=True, text=True, timeout=120,
                         env={**os.environ, **env})
    assert out.returncode == 0, out.stderr
    held, faults = out.stdout.split("\n")[:2]
    return held, float(faults)


@glibc
def test_freed_blocks_are_reused_without_page_faults():
    env = {"GLIBC_TUNABLES": ""}
    held, kept = _faults_per_block(BERTG4_KEEP_FREED_MEMORY="1", **env)
    assert held.startswith("glibc: freed memory kept (M_MMAP_MAX=0")
    default, faults = _faults_per_block(BERTG4_KEEP_FREED_MEMORY="0", **env)
    assert default == "default"
    pages = 48 * 2**20 // 4096
    assert faults > pages / 2, f"glibc's defaults faulted only {faults} pages of {pages} per block"
    assert kept < 64, f"{kept} page faults per reused 48 MiB block"


def test_the_switch_and_glibc_tunables(monkeypatch):
    monkeypatch.setattr(system, "_allocator", "default")
    monkeypatch.setenv("BERTG4_KEEP_FREED_MEMORY", "yes")
    with pytest.raises(ValueError, match="BERTG4_KEEP_FREED_MEMORY='yes'"):
        system.keep_freed_memory()
    monkeypatch.setenv("BERTG4_KEEP_FREED_MEMORY", "0")
    assert system.keep_freed_memory() == "default"
    monkeypatch.setenv("BERTG4_KEEP_FREED_MEMORY", "1")
    # a user's own malloc tunables win: nothing is set over them, and records say what held
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.mmap_max=0")
    assert system.allocator() == "GLIBC_TUNABLES=glibc.malloc.mmap_max=0"
    assert system.keep_freed_memory() == "GLIBC_TUNABLES=glibc.malloc.mmap_max=0"
    assert record_fields()["allocator"] == "GLIBC_TUNABLES=glibc.malloc.mmap_max=0"


def test_cpu_predictors_carry_this_process_memory_note():
    notes = memory_notes(["memory: an exporting process's", "SST head: probe"], torch.device("cpu"))
    assert notes[0] == "SST head: probe" and len(notes) == 2
    assert notes[1] == f"memory: {system.allocator()}" or notes[1].startswith("memory: the C library's default")
    assert memory_notes(["memory: old", "x"], torch.device("meta")) == ["x"]


@glibc
def test_peers_run_with_the_allocator_their_users_have(embedded):
    # bench --peers measures each peer as its users run it: building bertg4's reference
    # predictor in the peers' process must not change that process's allocator
    code = ("from bertg4 import peers, system\n"
            "(r,) = peers.run_peers('embedded', 'SST', 'sst2-dev', [8], warmup=0, repeats=1, max_rows=8,\n"
            "                       names=['hf-longest'], log=lambda *_: None)\n"
            "print(r['status'], '|', r['allocator'], '|', system.allocator())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "GLIBC_TUNABLES": "", "BERTG4_KEEP_FREED_MEMORY": "1"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "ok | default | default"
