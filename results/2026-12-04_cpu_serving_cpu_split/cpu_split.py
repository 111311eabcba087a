"""Where the two cores go while a server answers a closed loop, against the same model offline.

    python cpu_split.py URL [NAME] [--requests N] [--duration S] [--out FILE]

1. Offline, in this process: the served model loaded here with the replica's threads (as
   `bertg4 loadtest --offline` loads it), `infer` in batches of the server's max batch over
   SST-2 dev texts; its wall time and this process's CPU time per text.
2. Served: every process's CPU time (psutil, user + system) before and after a closed loop of
   twice the max batch clients (`bertg4.serve.loadtest.closed`, run in this process), grouped
   by role: the replica, Serve's controller and proxy, Ray's own processes, the load generator
   (this process), anything else on the machine. Per answered request and as cores over the
   loop's span; and the replica's busy time, from the batches' service times it reported.

Writes one JSON record (``--out``) and prints a table. Loopback only, bounded by ``--requests``
and ``--duration``.
"""
import argparse
import json
import os
import sys
import time

import psutil

from bertg4.serve import loadtest as L


def role(p: psutil.Process, me: int) -> str:
    if p.pid == me:
        return "load generator (this process)"
    try:
        cmd = " ".join(p.cmdline())
        name = p.name()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return "other"
    if "ServeReplica" in cmd or "ServeReplica" in name:
        return "Serve replica"
    if "ServeController" in cmd or "ServeController" in name:
        return "Serve controller"
    if "ProxyActor" in cmd or "ProxyActor" in name:
        return "Serve proxy"
    if "haproxy" in name or "haproxy" in cmd:
        return "HAProxy ingress"
    if "bertg4 serve" in cmd or cmd.endswith("bertg4") or " serve " in cmd and "bertg4" in cmd:
        return "bertg4 serve (driver)"
    if any(k in cmd for k in ("raylet", "gcs_server", "dashboard", "log_monitor", "monitor.py", "runtime_env",
                              "ray::", "default_worker", "ray/_private")):
        return "Ray (raylet, GCS, agents, idle workers)"
    return "other"


def cpu_snapshot() -> dict:
    out = {}
    for p in psutil.process_iter():
        try:
            t = p.cpu_times()
            out[p.pid] = (p, t.user + t.system)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass
    return out


def thread_times(pid: int) -> dict:
    """{thread id: (name, user + system CPU seconds)} of one process, from /proc."""
    out = {}
    tick = os.sysconf("SC_CLK_TCK")
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                name = f.read().strip()
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            out[int(tid)] = (name, (int(fields[11]) + int(fields[12])) / tick)
        except (FileNotFoundError, ProcessLookupError, IndexError):
            pass
    return out


def offline(info: dict, texts: list, max_batch: int, rounds: int = 3) -> dict:
    from bertg4.serve.app import DEFAULTS, load_predictor
    spec = {**DEFAULTS, **info["spec"]}
    if spec.get("threads"):
        import torch
        torch.set_num_threads(int(spec["threads"]))
    pred = load_predictor(spec)
    kw = {"padding": spec["padding"]} if spec.get("padding") else {}
    batch = pred.featurize(texts[:256])
    pred.infer(batch[:2 * max_batch], batch_size=max_batch, **kw)
    c0, t0 = time.process_time(), time.perf_counter()
    for _ in range(rounds):
        pred.infer(batch, batch_size=max_batch, **kw)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    n = rounds * len(batch)
    return {"offline_per_s": n / wall, "offline_cpu_ms_per_text": 1e3 * cpu / n, "offline_cores": cpu / wall,
            "offline_texts": n}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("url")
    ap.add_argument("name", nargs="?", default="bert")
    ap.add_argument("--requests", type=int, default=4000)
    ap.add_argument("--duration", type=float, default=25.0)
    ap.add_argument("--out")
    a = ap.parse_args(argv)
    url = a.url.rstrip("/")
    texts = L.traffic("sst2")
    info = L.server_info(url, a.name)
    B = int(info["max_batch_size"])
    off = offline(info, texts, B)
    me = os.getpid()
    bodies = L.bodies_for(info, texts)
    L.closed(f"{url}/v2/models/{a.name}/infer", bodies, 2 * B, n_requests=200, duration_s=3.0)  # warm-up
    before = cpu_snapshot()
    replica = [pid for pid, (p, _) in before.items() if role(p, me) == "Serve replica"]
    threads0 = {r: thread_times(r) for r in replica}
    run = L.closed(f"{url}/v2/models/{a.name}/infer", bodies, 2 * B, n_requests=a.requests, duration_s=a.duration)
    after = cpu_snapshot()
    by_thread: dict = {}
    for r in replica:
        for tid, (name, c1) in thread_times(r).items():
            c0 = threads0[r].get(tid, (name, 0.0))[1]
            if c1 - c0 > 0:
                by_thread[f"replica {r}: {name} [{'process' if tid == r else 'thread'} {tid}]"] = c1 - c0
    res = run["results"]
    ok = sum(1 for r in res if r.get("status") == 200)
    span = run["span_s"]
    roles: dict = {}
    for pid, (p, c1) in after.items():
        c0 = before[pid][1] if pid in before else 0.0
        k = role(p, me)
        roles[k] = roles.get(k, 0.0) + max(0.0, c1 - c0)
    batches = {}
    for r in res:  # the answers' x-bertg4-* headers, as loadtest keeps them
        if "batch" in r and "service-ms" in r:  # batch numbers count per replica
            batches[(r.get("replica"), r["batch"])] = float(r["service-ms"])
    busy_s = sum(batches.values()) / 1e3
    total = sum(roles.values())
    rec = {"url": url, "max_batch_size": B, "threads": info["spec"].get("threads"), "answered": ok,
           "sent": len(res), "span_s": span, "answered_per_s": ok / span, **off,
           "served_vs_offline": ok / span / off["offline_per_s"],
           "replica_busy_s": busy_s, "replica_busy_share": busy_s / span, "batches": len(batches),
           "cpu_s": roles, "cpu_total_s": total, "cores_used": total / span,
           "cpu_ms_per_request": {k: 1e3 * v / ok for k, v in roles.items()},
           "replica_threads_cpu_s": by_thread,
           "cpus": psutil.cpu_count(), "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    print(f"offline: {off['offline_per_s']:.1f} texts/s at batch {B}, {off['offline_cpu_ms_per_text']:.2f} ms CPU "
          f"a text ({off['offline_cores']:.2f} cores)")
    print(f"served: {ok} of {len(res)} answered in {span:.1f} s = {ok / span:.1f}/s "
          f"({100 * ok / span / off['offline_per_s']:.0f} % of offline); the replica computed batches "
          f"{100 * busy_s / span:.0f} % of the time ({len(batches)} batches)")
    print("| where | CPU s | cores | CPU ms per request |\n|---|---:|---:|---:|")
    for k, v in sorted(roles.items(), key=lambda kv: -kv[1]):
        print(f"| {k} | {v:.2f} | {v / span:.2f} | {1e3 * v / ok:.2f} |")
    print(f"| all | {total:.2f} | {total / span:.2f} | {1e3 * total / ok:.2f} |")
    print("\nthe replica's threads (name [thread id], CPU s over the loop):")
    for k, v in sorted(by_thread.items(), key=lambda kv: -kv[1]):
        print(f"  {k}: {v:.2f} s ({v / span:.2f} cores)")
    if a.out:
        with open(a.out, "w") as f:
            json.dump(rec, f)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
