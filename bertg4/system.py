"""Facts about the machine and the software a result was measured with.

The bottom of the package: engines, benchmarks and the command line all read these, and
this module imports nothing of bertg4's but the version string.
"""
from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import platform
import shutil
import subprocess
import sys
import time


def cpu_name() -> str:
    """The CPU's model name and core count: the device name of CPU records."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()} ({os.cpu_count()} cores)"


def cpu_flags() -> set[str]:
    """The CPU's feature flags (``/proc/cpuinfo``; empty where there is none)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_has_vnni() -> bool:
    """Whether the CPU multiplies 8-bit integers into 32-bit sums in one instruction (VNNI)."""
    return bool(cpu_flags() & {"avx512_vnni", "avx_vnni", "amx_int8"})


#: glibc's ``mallopt`` parameters (``malloc.h``)
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
#: how much free memory glibc may keep at the top of its heap (``mallopt`` takes an ``int``)
TRIM_THRESHOLD = 2**31 - 1
KEEP_FREED_MEMORY_ENV = "BERTG4_KEEP_FREED_MEMORY"
#: what a predictor's note on this starts with (:func:`bertg4.pt.engine.hold_freed_memory`)
MEMORY_NOTE = "memory: "
#: the glibc settings that decide whether freed memory goes back to the kernel: tunables, and
#: the older environment variables glibc still reads
_TUNABLES = ("glibc.malloc.mmap_max", "glibc.malloc.trim_threshold", "glibc.malloc.mmap_threshold")
_LEGACY = ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_")
_allocator = "default"  # what keep_freed_memory() has set in this process


def _users_setting() -> str | None:
    """The user's own say over what glibc gives back, as found in the environment: the
    tunables and variables of :data:`_TUNABLES`/:data:`_LEGACY`, or a ``malloc`` that is not the
    C library's (an ``LD_PRELOAD`` allocator such as jemalloc or tcmalloc); None if none."""
    found = [t for t in os.environ.get("GLIBC_TUNABLES", "").split(":") if t.split("=")[0] in _TUNABLES]
    found += [f"{k}={os.environ[k]}" for k in _LEGACY if k in os.environ]
    if found:
        return "set by the environment: " + ", ".join(found)
    preload = os.environ.get("LD_PRELOAD", "")
    if preload:
        try:
            ours = ctypes.cast(ctypes.CDLL(None).malloc, ctypes.c_void_p).value
            libc = ctypes.cast(ctypes.CDLL("libc.so.6").malloc, ctypes.c_void_p).value
        except (OSError, AttributeError):
            return None
        if ours != libc:
            return f"malloc from LD_PRELOAD={preload}"
    return None


def keep_freed_memory() -> str:
    """Have glibc keep the memory that freed tensors leave, so that the next batch's tensors
    reuse it instead of page-faulting fresh pages; returns what holds (:func:`allocator`).

    On a CPU, PyTorch hands each tensor's memory back to ``malloc`` when the tensor dies.
    glibc serves a large block (128 KiB and up; a threshold it raises, up to 32 MiB, as large
    blocks are freed) with a fresh ``mmap`` that goes back to the kernel when freed, and
    gives the top of its heap back once more than twice that threshold is free there. The
    next forward's activations, of the same sizes, then touch new pages: a page fault for
    every 4 KiB. Which happens depends on the order of earlier allocations, so it can differ
    between processes of one command (``results/2026-12-01_cpu_allocator/faults.txt``:
    BERT-base ``onednn-int8`` at batch 32, about 400,000 faults and 1.2 s per forward with
    glibc's defaults against at most a few hundred and 0.7-0.75 s with this setting). ONNX
    Runtime keeps its own memory arena.

    ``mallopt(M_MMAP_MAX, 0)`` serves blocks from the heap, and ``M_TRIM_THRESHOLD`` (2 GiB)
    lets that much stay free at its top: in steady state a forward touches no new page. The
    price: the process keeps its peak memory, and some more where freed blocks sit between
    live ones until the heap settles. It acts on the whole process, for every thread, and
    cannot be undone (an application that loads a CPU predictor inherits it). Threads other
    than the main one allocate from heaps of their own, where glibc still maps a block of
    64 MiB or more afresh and gives back a heap that is wholly free.

    Nothing is set where ``BERTG4_KEEP_FREED_MEMORY=0``, where the C library is not glibc,
    or where the user already decided: glibc's ``mmap_max``/``trim_threshold``/``mmap_threshold``
    tunables or their ``MALLOC_*_`` variables, or a ``malloc`` loaded with ``LD_PRELOAD``.
    The same setting for any program: ``GLIBC_TUNABLES=glibc.malloc.mmap_max=0:``
    ``glibc.malloc.trim_threshold=2147483647``."""
    global _allocator
    value = os.environ.get(KEEP_FREED_MEMORY_ENV, "1")
    if value not in ("0", "1"):
        raise ValueError(f"{KEEP_FREED_MEMORY_ENV}={value!r}: use 1 (keep freed memory in the heap, "
                         "the default) or 0 (leave the C library's defaults)")
    if value == "0" or _allocator != "default" or _users_setting() is not None:
        return allocator()
    if platform.libc_ver()[0] != "glibc":
        return allocator()
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return allocator()
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    done = [name for name, param, v in (("M_MMAP_MAX=0", _M_MMAP_MAX, 0),
                                        (f"M_TRIM_THRESHOLD={TRIM_THRESHOLD}", _M_TRIM_THRESHOLD, TRIM_THRESHOLD))
            if mallopt(param, v) == 1]
    if done:  # mallopt answers 1 for each parameter it took
        _allocator = f"glibc: freed memory kept ({', '.join(done)})"
    return allocator()


def allocator() -> str:
    """How this process's C allocator treats freed memory: ``"default"``, what
    :func:`keep_freed_memory` set, or the user's own setting it found in the environment."""
    if _allocator != "default":
        return _allocator
    return _users_setting() or "default"


#: a garbage-collector pause at least this long is kept with its time (:class:`GcPauses`)
LONG_GC_PAUSE_MS = 5.0


class GcPauses:
    """Python's garbage-collector pauses in this process, from ``gc.callbacks``: how many,
    their total and the longest, by generation, and each pause of ``long_ms`` or more with the
    wall-clock time it ended (the last ``keep``). A server's requests wait through every pause
    of its event loop; a load generator's latencies grow by its own.

    The callback never changes a container in place: it builds the new state and rebinds it in
    one assignment, so :meth:`summary` (from any thread, or while a collection that its own
    allocations set off runs) reads one consistent state."""

    def __init__(self, long_ms: float = LONG_GC_PAUSE_MS, keep: int = 256):
        self.long_ms, self.keep = float(long_ms), int(keep)
        # per generation 0, 1, 2: (count, total ms, max ms); long pauses: ((time, ms, generation), ...)
        self._state = ((0, 0, 0), (0.0, 0.0, 0.0), (0.0, 0.0, 0.0), ())
        self._t0 = None

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
            return
        if self._t0 is None:
            return
        ms, gen = 1e3 * (time.perf_counter() - self._t0), min(2, max(0, int(info.get("generation", 2))))
        self._t0 = None
        count, total, longest, long = self._state
        bump = lambda t, v: tuple(v if i == gen else x for i, x in enumerate(t))  # noqa: E731
        if ms >= self.long_ms:
            long = (long + ((time.time(), ms, gen),))[-self.keep:]
        self._state = (bump(count, count[gen] + 1), bump(total, total[gen] + ms),
                       bump(longest, max(longest[gen], ms)), long)

    def install(self) -> "GcPauses":
        if self not in gc.callbacks:
            gc.callbacks.append(self)
        return self

    def remove(self) -> None:
        if self in gc.callbacks:
            gc.callbacks.remove(self)

    def summary(self, start: float | None = None, end: float | None = None) -> dict:
        """Counts, total and longest pause (ms) since installed, overall and by generation;
        ``long``: the pauses of ``long_ms`` or more, those that ended between the wall-clock
        times ``start`` and ``end`` when given, as ``[time, ms, generation]``."""
        count, total, longest, long = self._state
        lo, hi = (start if start is not None else -float("inf")), (end if end is not None else float("inf"))
        return {"collections": sum(count), "collections_by_generation": {str(g): n for g, n in enumerate(count)},
                "total_ms": round(sum(total), 3), "max_ms": round(max(longest), 3),
                "max_ms_by_generation": {str(g): round(v, 3) for g, v in enumerate(longest)},
                "long_ms": self.long_ms,
                "long": [[t, round(ms, 3), g] for t, ms, g in long if lo <= t <= hi]}


def freeze_heap() -> int:
    """Collect once, then move every object alive now out of the garbage collector's view
    (``gc.freeze``): a long-lived process (a replica, once its model is loaded and warmed up)
    then pays each full collection for the objects made since, not for the whole heap of torch,
    Ray and the web framework. Returns how many objects are frozen. Objects frozen here that
    become garbage later are only reclaimed by reference counting (``gc.unfreeze`` hands them
    back)."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def versions() -> dict:
    """Versions of Python and of the installed libraries that matter to the numbers."""
    from importlib import metadata
    out = {"python": platform.python_version()}
    for dist in ("bertg4", "torch", "numpy", "transformers", "tokenizers", "mxnet", "mxnet-cu102",
                 "gluonnlp", "onnxruntime", "ray", "sentence-transformers"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    if "bertg4" not in out:  # running from a source tree that is not installed
        from . import __version__
        out["bertg4"] = __version__
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        out["cuda"] = torch.version.cuda
        out["cudnn"] = torch.backends.cudnn.version()
    return out


def command_line() -> str:
    """The command as a user would type it (``bertg4 ...`` for the console script and -m)."""
    prog = os.path.basename(sys.argv[0])
    if prog in ("cli.py", "__main__.py", "bertg4"):
        prog = "bertg4"
    return " ".join([prog] + sys.argv[1:])


def system_gpus() -> list[str]:
    """The NVIDIA GPUs the operating system sees, whatever torch sees: ``nvidia-smi -L``'s lines,
    else the folders of ``/proc/driver/nvidia/gpus``; empty where there is no NVIDIA driver."""
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            out = None
        if out is not None and out.returncode == 0:
            gpus = [line.strip() for line in out.stdout.splitlines() if line.startswith("GPU ")]
            if gpus:
                return gpus
    try:
        return [f"GPU at PCI {bus}" for bus in sorted(os.listdir("/proc/driver/nvidia/gpus"))]
    except OSError:
        return []


def default_device() -> str:
    """The device the notebooks run on: ``"cuda"`` when torch sees a GPU, ``"cpu"`` when the
    machine has none.

    Raises :class:`RuntimeError` when the system shows an NVIDIA GPU (``nvidia-smi -L`` or
    ``/proc/driver/nvidia/gpus``) that torch cannot use -- a CPU build of torch, or a driver too
    old for torch's CUDA -- instead of silently measuring the CPU; ``BERTG4_ALLOW_CPU=1`` runs
    on the CPU anyway."""
    import torch
    if torch.cuda.is_available():
        return "cuda"
    gpus = system_gpus()
    if gpus and os.environ.get("BERTG4_ALLOW_CPU") != "1":
        build = (f"a CPU-only build ({torch.__version__})" if torch.version.cuda is None else
                 f"built for CUDA {torch.version.cuda}, which this driver cannot run")
        raise RuntimeError(
            f"the system shows {len(gpus)} NVIDIA GPU(s) ({gpus[0]}) but torch cannot use them: "
            f"torch is {build}. Install a CUDA build of torch that matches the driver (see "
            "environment.yml), or set BERTG4_ALLOW_CPU=1 to run on the CPU on purpose.")
    return "cpu"


def full_sizes_allowed(device: str) -> bool:
    """Whether the notebooks run the article's full sizes on ``device``: always on a GPU; on a
    CPU only when ``BERTG4_FULL=1`` (full sizes take hours there), otherwise small sizes."""
    if not str(device).startswith("cpu"):
        return True
    return os.environ.get("BERTG4_FULL") == "1"


@contextlib.contextmanager
def scoped_environ(values: dict[str, str]):
    """Set environment variables for the duration of a block; restore (or remove) them after."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield values
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
