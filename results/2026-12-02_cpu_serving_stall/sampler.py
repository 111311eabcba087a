"""Every process's CPU time on this machine, sampled every --interval seconds until --duration
has passed (or SIGTERM), written as JSON lines to OUT: one line per sample with the
sample's time on time.perf_counter (the replica's x-bertg4-clock, on Linux the machine's
monotonic clock) and, per process whose user+system time grew since the last sample, that
growth in clock ticks; a process's name (its command line, 120 characters) is written
once, the first time it is seen. Reads /proc only.
    python sampler.py OUT [--interval 0.05] [--duration 600]"""
import argparse
import json
import os
import signal
import time

p = argparse.ArgumentParser()
p.add_argument("out")
p.add_argument("--interval", type=float, default=0.05)
p.add_argument("--duration", type=float, default=600.0)
a = p.parse_args()
stop = False
signal.signal(signal.SIGTERM, lambda *_: globals().__setitem__("stop", True))
me = os.getpid()
last: dict[int, int] = {}
named: set[int] = set()
end = time.perf_counter() + a.duration
with open(a.out, "w") as f:
    f.write(json.dumps({"clock_ticks_per_s": os.sysconf("SC_CLK_TCK"), "interval_s": a.interval}) + "\n")
    while not stop and time.perf_counter() < end:
        t = time.perf_counter()
        grew = {}
        for d in os.listdir("/proc"):
            if not d.isdigit() or int(d) == me:
                continue
            pid = int(d)
            try:
                with open(f"/proc/{d}/stat", "rb") as s:
                    fields = s.read().rsplit(b")", 1)[1].split()
                ticks = int(fields[11]) + int(fields[12])
                if pid not in named:
                    with open(f"/proc/{d}/cmdline", "rb") as c:
                        name = c.read().replace(b"\0", b" ").decode(errors="replace").strip()[:120]
                    f.write(json.dumps({"pid": pid, "name": name}) + "\n")
                    named.add(pid)
            except (FileNotFoundError, ProcessLookupError, IndexError):
                continue
            if pid in last and ticks > last[pid]:
                grew[pid] = ticks - last[pid]
            last[pid] = ticks
        f.write(json.dumps({"t": round(t, 4), "cpu": grew}) + "\n")
        time.sleep(max(0.0, a.interval - (time.perf_counter() - t)))
