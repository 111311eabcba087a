"""Freed activations are reused from the heap instead of page-faulting new pages
(bertg4.system.keep_freed_memory), and every CPU predictor and record says how memory was held."""
import json
import os
import platform
import subprocess
import sys

import pytest

from bertg4 import system
from bertg4.bench import record_fields

glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")


def _thp_always() -> bool:
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled", encoding="utf-8") as f:
            return "[always]" in f.read()
    except OSError:
        return False


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

_CLEAN = {"GLIBC_TUNABLES": "", "LD_PRELOAD": "", "MALLOC_MMAP_MAX_": "", "MALLOC_TRIM_THRESHOLD_": "",
          "MALLOC_MMAP_THRESHOLD_": ""}


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in _CLEAN}
    env.update(extra)
    return env


def _run(code, **env):
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env=_env(**env))
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()


@glibc
@pytest.mark.skipif(_thp_always(), reason="transparent huge pages 'always': a fresh mmap faults in 2 MiB pages")
def test_freed_blocks_are_reused_without_page_faults():
    held, kept = _run(_FAULTS, BERTG4_KEEP_FREED_MEMORY="1")[:2]
    assert held == "glibc: freed memory kept (M_MMAP_MAX=0, M_TRIM_THRESHOLD=2147483647)"
    default, faults = _run(_FAULTS, BERTG4_KEEP_FREED_MEMORY="0")[:2]
    assert default == "default"
    pages = 48 * 2**20 // 4096
    assert float(faults) > pages / 2, f"glibc's defaults faulted only {faults} pages of {pages} per block"
    assert float(kept) < 64, f"{kept} page faults per reused 48 MiB block"


def test_the_switch_and_the_users_own_settings(monkeypatch):
    monkeypatch.setattr(system, "_allocator", "default")
    for k in _CLEAN:
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("BERTG4_KEEP_FREED_MEMORY", "yes")
    with pytest.raises(ValueError, match="BERTG4_KEEP_FREED_MEMORY='yes'"):
        system.keep_freed_memory()
    monkeypatch.setenv("BERTG4_KEEP_FREED_MEMORY", "0")
    assert system.keep_freed_memory() == "default"
    # a user's own setting of what glibc gives back wins, with the switch on or off, and records
    # and the function say the same
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.arena_max=2:glibc.malloc.mmap_max=0")
    said = "set by the environment: glibc.malloc.mmap_max=0"
    assert system.keep_freed_memory() == said == system.allocator() == record_fields()["allocator"]
    monkeypatch.setenv("BERTG4_KEEP_FREED_MEMORY", "1")
    assert system.keep_freed_memory() == said and system._allocator == "default"  # nothing set over it
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.arena_max=2")  # not about giving memory back
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "1000000")
    assert system.allocator() == "set by the environment: MALLOC_TRIM_THRESHOLD_=1000000"
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_")
    assert system.allocator() == "default"
    monkeypatch.setenv("LD_PRELOAD", "libc.so.6")  # the C library's own malloc: not a replacement
    assert system.allocator() == "default"


_EXPORT = r"""
import json, os, sys
import bertg4
p = bertg4.load("embedded", task="SST", seq_length=32)
print(json.dumps([n for n in p.notes if n.startswith("memory: ")]))
p.export(sys.argv[1])
with open(os.path.join(sys.argv[1], "bertg4_export.json")) as f:
    print(json.dumps([n for n in json.load(f)["notes"] if n.startswith("memory: ")]))
"""
_RELOAD = r"""
import json, sys
from bertg4.pt import load_exported
p = load_exported(sys.argv[1])
print(json.dumps([n for n in p.notes if n.startswith("memory: ")]))
"""


@glibc
def test_cpu_predictors_note_what_their_process_holds(tmp_path, embedded):
    d = str(tmp_path / "export")
    out = subprocess.run([sys.executable, "-c", _EXPORT, d], capture_output=True, text=True, timeout=300,
                         env=_env(BERTG4_KEEP_FREED_MEMORY="1"))
    assert out.returncode == 0, out.stderr
    built, written = (json.loads(line) for line in out.stdout.strip().splitlines()[-2:])
    assert built == ["memory: glibc: freed memory kept (M_MMAP_MAX=0, M_TRIM_THRESHOLD=2147483647)"]
    assert written == []  # the exporting process's setting is not the artefact's
    out = subprocess.run([sys.executable, "-c", _RELOAD, d], capture_output=True, text=True, timeout=300,
                         env=_env(BERTG4_KEEP_FREED_MEMORY="0"))
    assert out.returncode == 0, out.stderr
    (reloaded,) = (json.loads(line) for line in out.stdout.strip().splitlines()[-1:])
    assert reloaded == ["memory: the C library's default allocator (freed activations may page-fault again)"]


@glibc
def test_peers_run_with_the_allocator_their_users_have(embedded):
    # bench --peers measures each peer as its users run it: building bertg4's reference
    # predictor in the peers' process must not change that process's allocator
    code = ("from bertg4 import peers, system\n"
            "(r,) = peers.run_peers('embedded', 'SST', 'sst2-dev', [8], warmup=0, repeats=1, max_rows=8,\n"
            "                       names=['hf-longest'], log=print)\n"
            "print(r['status'], '|', r['allocator'], '|', system.allocator())\n")
    assert _run(code, BERTG4_KEEP_FREED_MEMORY="1")[-1] == "ok | default | default"
    # a process whose allocator was already changed says so, and so do the records
    code = "from bertg4 import system\nsystem.keep_freed_memory()\n" + code
    lines = _run(code, BERTG4_KEEP_FREED_MEMORY="1")
    assert any("allocator was changed before the peers ran" in line for line in lines)
    assert lines[-1].startswith("ok | glibc: freed memory kept")
