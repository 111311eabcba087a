"""Serving under stress: the command's lifecycle, overload, and a replica killed mid-load.

Everything binds and targets 127.0.0.1, is bounded in requests and time, and shuts Ray
down at the end.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

pytest.importorskip("ray.serve")

from bertg4.serve import loadtest as L  # noqa: E402


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_command(args, env=None, timeout_s=180):
    """`bertg4 serve ARGS` in a process of its own, and the lines it printed until it said it
    serves (or stopped, or ``timeout_s`` passed)."""
    proc = subprocess.Popen([sys.executable, "-m", "bertg4.serve.command", "serve", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0", **(env or {})})
    lines = []
    deadline = time.time() + timeout_s
    try:
        while time.time() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "Ctrl-C" in line:
                break
    except BaseException:
        kill_if_running(proc)
        raise
    return proc, lines


def stop_serve(proc, lines) -> str:
    """SIGTERM to a `serve_command` process: it stops Serve and its Ray instance and exits 0;
    what it printed after its start lines."""
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=90)
    lines.append(out)
    assert proc.returncode == 0, "".join(lines[-20:])
    assert "stopped: Serve shut down and the local Ray instance with it" in out
    return out


def kill_if_running(proc) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(30)


def test_serve_command_lifecycle():
    """`serve` says where it listens, answers through the proxy and, with --direct-ingress, on
    the replica's own HTTP server alike; with --max-batch-tokens, batches fill by tokens and a
    request larger than the budget gets 413; SIGTERM stops Serve and its Ray instance."""
    port = free_port()
    proc, lines = serve_command(["--port", str(port), "--num-cpus", "1", "--seq-length", "16", "--threads", "1",
                                 "--max-batch-size", "2", "--direct-ingress", "--max-batch-tokens", "20"])
    try:
        assert any(f"listening on http://127.0.0.1:{port}" in x for x in lines), "".join(lines[-20:])
        direct = [x.rsplit(": ", 1)[1].strip() for x in lines if x.startswith("replica's own HTTP server")]
        assert len(direct) == 1 and direct[0].startswith("http://127.0.0.1:"), "".join(lines[-20:])
        assert direct[0] != f"http://127.0.0.1:{port}"
        body = L.infer_body(["a fine film", "a dull, lifeless film"])
        answers = []
        for url in (f"http://127.0.0.1:{port}", direct[0]):
            req = urllib.request.Request(f"{url}/v2/models/bert/infer", data=body)
            with urllib.request.urlopen(req, timeout=30) as r:
                assert r.status == 200
                answers.append(json.loads(r.read())["outputs"])
        assert answers[0] == answers[1]
        long = "a long winding film that goes on and on and on without end " * 3  # cut to 16 tokens
        req = urllib.request.Request(f"{direct[0]}/v2/models/bert/infer", data=L.infer_body([long, long]))
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=30)
        assert e.value.code == 413 and "32 tokens is larger than the batch budget of 20" in e.value.read().decode()
        # a short load: every batch within the budget, and the record simulates the token budget
        bodies = [L.infer_body([t]) for t in ("a fine film", "bad", long, "an utterly dull film")]
        run = L.load(f"{direct[0]}/v2/models/bert/infer", bodies, 30.0, n_requests=30, duration_s=5)
        ok = [r for r in run["results"] if r["outcome"] == "ok"]
        assert len(ok) == 30 and max(int(r["batch-tokens"]) for r in ok) <= 20
        assert max(int(r["batch-size"]) for r in ok) >= 2  # short requests do share batches
        rec = L.load_record(run, L.server_info(direct[0], "bert"))
        assert rec["ok"] == rec["sent"] == 30 and rec["max_batch_tokens"] == 20
        # the replica's process (a CPU pt predictor) keeps freed memory; the record says so
        assert rec["allocator"].startswith(("glibc: freed memory kept", "set by the environment"))
        assert rec["float32_matmul"] == "default"  # the replica's baseline predictor: PyTorch's default library
        assert rec["service_ms_per_token"] >= 0 and rec["request_tokens_mean"] > 3
        assert rec["p99_ms_simulated"] > 0 or not rec["simulated_stable"]
        stop_serve(proc, lines)
        for url in (f"http://127.0.0.1:{port}", direct[0]):
            with pytest.raises(OSError):
                urllib.request.urlopen(f"{url}/v2/health/live", timeout=5)
    finally:
        kill_if_running(proc)


def _haproxy_pids() -> set[int]:
    pids = set()
    for d in os.listdir("/proc"):
        try:
            if d.isdigit() and open(f"/proc/{d}/comm").read().strip() == "haproxy":
                pids.add(int(d))
        except OSError:
            pass
    return pids


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="finds HAProxy's process in /proc")
def test_serve_command_with_haproxy_in_front_of_two_replicas():
    """`serve --haproxy --replicas 2`: HAProxy (Ray's own binary) answers on the port and both
    replicas answer through it; the metadata says two replicas serve, and a load record
    simulates two; HAProxy's own ports are the ones the environment gives and `serve` names
    them; SIGTERM stops HAProxy with Serve and Ray."""
    port, stats, metrics = free_port(), free_port(), free_port()
    before = _haproxy_pids()
    proc, lines = serve_command(["--port", str(port), "--num-cpus", "2", "--replicas", "2", "--replica-cpus", "1",
                                 "--threads", "1", "--seq-length", "16", "--max-batch-size", "2", "--haproxy"],
                                {"RAY_SERVE_HAPROXY_STATS_PORT": str(stats),
                                 "RAY_SERVE_HAPROXY_METRICS_PORT": str(metrics)}, timeout_s=240)
    try:
        said = "".join(lines[-20:])
        assert any(f"listening on http://127.0.0.1:{port}" in x for x in lines), said
        assert any(x.startswith("HAProxy ingress") and f"{stats} (RAY_SERVE_HAPROXY_STATS_PORT)" in x
                   and f"{metrics} (RAY_SERVE_HAPROXY_METRICS_PORT)" in x for x in lines), said
        assert _haproxy_pids() - before, "no HAProxy process runs"
        url = f"http://127.0.0.1:{port}"
        info = L.server_info(url, "bert")
        assert info["num_replicas"] == 2 and (info["ingress"], info["haproxy_balance"]) == ("haproxy", "leastconn")
        run = L.load(f"{url}/v2/models/bert/infer", [L.infer_body([t]) for t in ("a fine film", "a dull film")],
                     20.0, n_requests=40, duration_s=8)
        ok = [r for r in run["results"] if r["outcome"] == "ok"]
        assert len(ok) == 40 and len({r["replica"] for r in ok}) == 2  # both answered through HAProxy
        rec = L.load_record(run, info)
        assert rec["replicas_seen"] == 2 and rec["simulated_replicas"] == 2 and "simulated_note" not in rec
        assert rec["p99_ms_simulated"] > 0 and rec["capacity_per_s"] > 0
        stop_serve(proc, lines)
        deadline = time.time() + 20
        while _haproxy_pids() - before and time.time() < deadline:
            time.sleep(0.5)
        assert not _haproxy_pids() - before, "HAProxy outlived the server"
        with pytest.raises(OSError):
            urllib.request.urlopen(f"{url}/v2/health/live", timeout=5)
    finally:
        kill_if_running(proc)


B = 4


@pytest.fixture(scope="module")
def server():
    from bertg4.serve.server import start
    srv = start({"model": "embedded", "task": "SST", "seq_length": 32, "max_batch_size": B,
                 "batch_wait_ms": 5, "threads": 1}, port=free_port(), num_cpus=2,
                max_ongoing_requests=2 * B, max_queued_requests=2 * B)
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def bodies():
    return [L.infer_body([t]) for t in L.traffic("sample")]


def test_overload_is_answered_with_503_and_recovers(server, bodies, measured):
    single = L.sequential_latency(server.infer_url, bodies, n=5)
    # a batch of B takes longer than one request alone: this rate is above 2 x capacity
    rate = 2 * B * 1e3 / single["single_ms_p50"]
    run = L.load(server.infer_url, bodies, rate, n_requests=500, duration_s=4, timeout_s=30)
    res = run["results"]
    counts = {k: sum(r["outcome"] == k for r in res) for k in L.OUTCOMES}
    assert counts["lost"] == 0 and counts["failed"] == 0, counts
    assert counts["rejected"] > 0 and counts["ok"] > 0, counts
    rejected = [r for r in res if r["outcome"] == "rejected"]
    assert {r["status"] for r in rejected} == {503}
    quick = np.percentile([r["latency_s"] for r in rejected], 99)
    ok_p99 = np.percentile([r["latency_s"] for r in res if r["outcome"] == "ok"], 99)
    # the queues are bounded: an accepted request waits for at most (2B ongoing + 2B queued)
    # requests, a few batches; a rejection does not wait for the model at all
    assert quick < 1.0, quick
    assert ok_p99 < 3.0, ok_p99
    measured("serve overload: offered req/s, ok, 503, p99 of 503s / of ok (s)",
             f"{rate:.0f}, {counts['ok']}, {counts['rejected']}, {quick:.3f} / {ok_p99:.3f}")
    time.sleep(1.0)
    after = L.load(server.infer_url, bodies, 4.0, n_requests=12, duration_s=10, timeout_s=30)["results"]
    assert all(r["outcome"] == "ok" for r in after), [r.get("error") for r in after]
    assert np.percentile([r["latency_s"] for r in after], 99) < 1.0


def _replica_actor():
    import ray
    names = [a for a in ray.util.list_named_actors(all_namespaces=True) if "SERVE_REPLICA" in a["name"]]
    assert len(names) == 1, names
    return ray.get_actor(names[0]["name"], namespace=names[0]["namespace"])


def test_replica_killed_mid_load(server, bodies):
    import ray
    victim = _replica_actor()
    killed = threading.Event()

    def kill():
        ray.kill(victim, no_restart=True)
        killed.set()
    timer = threading.Timer(2.0, kill)
    timer.start()
    try:
        run = L.load(server.infer_url, bodies, 4.0, n_requests=40, duration_s=10, timeout_s=45)
    finally:
        timer.cancel()
    assert killed.is_set()
    res = run["results"]
    counts = {k: sum(r["outcome"] == k for r in res) for k in L.OUTCOMES}
    assert counts["lost"] == 0, counts
    assert len(res) == counts["ok"] + counts["rejected"] + counts["failed"]
    replicas = [r["replica"] for r in res if r["outcome"] == "ok"]
    assert len(set(replicas)) == 2, set(replicas)  # the old replica, then its replacement
    assert replicas[-1] != replicas[0]
    # and the replacement serves on: a short, slow load is answered in full
    after = L.load(server.infer_url, bodies, 2.0, n_requests=8, duration_s=10, timeout_s=45)["results"]
    assert all(r["outcome"] == "ok" and r["replica"] == replicas[-1] for r in after), \
        [(r["outcome"], r.get("error")) for r in after]
