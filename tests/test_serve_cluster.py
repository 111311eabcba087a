"""Scale-out on one machine: a Ray head and a second Ray node as separate processes on
127.0.0.1, two replicas placed on different nodes, both serving.

The nodes are started with ``ray start --block`` and stopped by their process ids (never
``ray stop``, which would stop every Ray instance of this user on the machine).
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("ray.serve")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_node(args, log_path):
    ray_bin = shutil.which("ray") or os.path.join(os.path.dirname(os.sys.executable), "ray")
    log = open(log_path, "w")
    proc = subprocess.Popen([ray_bin, "start", "--block", "--node-ip-address=127.0.0.1", "--num-cpus=1",
                             "--disable-usage-stats", *args], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True,
                            env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token",
                                 # one proxy (one port per machine): let it route to both nodes alike
                                 # rather than prefer the replica on its own node
                                 "RAY_SERVE_PROXY_PREFER_LOCAL_NODE_ROUTING": "0"})
    return proc, log


def wait_for(path, words, proc, timeout=180):
    deadline = time.time() + timeout
    while time.time() < deadline:
        text = open(path).read()
        if words in text:
            return
        if proc.poll() is not None:
            raise RuntimeError(f"ray start exited with {proc.returncode}:\n{text[-3000:]}")
        time.sleep(0.5)
    raise TimeoutError(f"no {words!r} from ray start in {timeout} s:\n{open(path).read()[-3000:]}")


def start_and_wait(args, log_path, attempts=2):
    """A node; a second attempt when Ray's 30 s registration limit passes on a busy machine."""
    for attempt in range(attempts):
        proc, log = start_node(args, log_path)
        try:
            wait_for(log_path, "Ray runtime started", proc)
            return proc, log
        except RuntimeError as e:
            stop_node(proc)
            log.close()
            if "timed out during startup" not in str(e) or attempt == attempts - 1:
                raise


def stop_node(proc):
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)  # ray start --block stops the node's processes on SIGTERM
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)


def test_two_replicas_on_two_nodes(tmp_path):
    import ray
    from bertg4.serve.server import start
    from bertg4.serve.loadtest import infer_body
    assert not ray.is_initialized()
    # token authentication, Ray's default for a new cluster: the nodes are told so explicitly
    # (the head writes ~/.ray/auth_token when there is none, the second node reads it)
    mode_before = os.environ.get("RAY_AUTH_MODE")  # "token" when a local instance ran in this process
    assert mode_before in (None, "token"), mode_before
    gcs = free_port()
    temp = tempfile.mkdtemp(prefix="rayc", dir="/tmp")  # socket paths must stay short
    nodes = []
    try:
        nodes.append(start_and_wait(["--head", f"--port={gcs}", "--include-dashboard=false", f"--temp-dir={temp}",
                                     f"--node-manager-port={free_port()}", f"--object-manager-port={free_port()}"],
                                    tmp_path / "head.log"))
        nodes.append(start_and_wait([f"--address=127.0.0.1:{gcs}", f"--node-manager-port={free_port()}",
                                     f"--object-manager-port={free_port()}"], tmp_path / "worker.log"))
        # this process too: Ray's own switch, which turns token mode on when the token file exists
        from ray._private.authentication.authentication_token_setup import \
            maybe_enable_token_auth_if_token_available
        if mode_before is None:
            assert maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
        http = free_port()
        srv = start({"model": "embedded", "task": "SST", "seq_length": 16, "max_batch_size": 2, "threads": 1},
                    port=http, address=f"127.0.0.1:{gcs}", replicas=2, replica_cpus=1, max_replicas_per_node=1,
                    proxy_location="HeadOnly")
        try:
            alive = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
            assert len(alive) == 2
            body = infer_body(["a film worth seeing"])

            def ask(_):
                with urllib.request.urlopen(urllib.request.Request(srv.infer_url, data=body), timeout=60) as r:
                    return r.headers["x-bertg4-node"], r.headers["x-bertg4-replica"], json.loads(r.read())
            with ThreadPoolExecutor(6) as ex:
                answers = list(ex.map(ask, range(40)))
            served_by = {node for node, _, _ in answers}
            assert served_by == alive, (served_by, alive)  # both nodes answered
            assert len({rep for _, rep, _ in answers}) == 2
            probs = [out["outputs"][1]["data"] for _, _, out in answers]  # the same answer everywhere
            assert max(abs(a - b) for p in probs for a, b in zip(p, probs[0])) < 1e-5
        finally:
            srv.stop()
    finally:
        for proc, log in reversed(nodes):
            stop_node(proc)
            log.close()
        shutil.rmtree(temp, ignore_errors=True)
        if mode_before is None:
            os.environ.pop("RAY_AUTH_MODE", None)  # set by the switch above
