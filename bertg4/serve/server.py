"""Start and stop a bertg4 server: a local Ray instance (or an existing cluster), Serve's
HTTP proxy, and the application of :mod:`bertg4.serve.app`.

>>> srv = start({"model": "embedded", "task": "SST", "seq_length": 64}, port=8000)
>>> srv.url                      # 'http://127.0.0.1:8000'
>>> srv.stop()                   # Serve down; the local Ray instance too, when we started it
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from .app import DEFAULTS, build_app, deployment_options

APP_NAME = "bertg4"


def _init_local(num_cpus, attempts: int = 2) -> None:
    """A local Ray instance on 127.0.0.1. Ray gives its node 30 s to register; on a machine
    busy with other work that can pass, and a second attempt then usually succeeds."""
    import ray
    for attempt in range(attempts):
        try:
            ray.init(include_dashboard=False, _node_ip_address="127.0.0.1", num_cpus=num_cpus, log_to_driver=False)
            return
        except Exception as e:  # noqa: BLE001 - Ray raises a bare Exception for this
            if "timed out during startup" not in str(e) or attempt == attempts - 1:
                raise
            ray.shutdown()


@dataclass
class Server:
    host: str
    port: int
    name: str
    spec: dict
    options: dict
    started_ray: bool
    address: str | None = None
    stopped: bool = field(default=False, repr=False)

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}"

    @property
    def infer_url(self) -> str:
        return f"{self.url}/v2/models/{self.name}/infer"

    def describe(self) -> str:
        s = self.spec
        what = f"export {s['exported_model']}" if s.get("exported_model") else \
            f"{s['model']} task {s['task']} engine {s['engine']} recipe {s['recipe']} seq {s['seq_length']}"
        scale = (f"replicas {self.options['autoscaling_config']['min_replicas']}.."
                 f"{self.options['autoscaling_config']['max_replicas']} (autoscaling)"
                 if "autoscaling_config" in self.options else f"replicas {self.options['num_replicas']}")
        where = f"Ray cluster {self.address}" if self.address else "a local Ray instance"
        return (f"serving model {self.name!r} ({what}) on {s['device']}, {scale}, max batch "
                f"{s['max_batch_size']}, batch wait {s['batch_wait_ms']:g} ms, on {where}\n"
                f"listening on http://{self.host}:{self.port} (Open Inference Protocol: "
                f"POST {self.infer_url}, GET {self.url}/v2/models/{self.name})")

    def stop(self) -> None:
        """Shut Serve down, and the Ray instance when this process started it."""
        if self.stopped:
            return
        import ray
        from ray import serve
        try:
            serve.shutdown()
        finally:
            if self.started_ray:
                ray.shutdown()
            self.stopped = True


def start(spec: dict | None = None, host: str = "127.0.0.1", port: int = 8000, address: str | None = None,
          num_cpus: int | None = None, replicas: int | None = 1, min_replicas: int | None = None,
          max_replicas: int | None = None, replica_cpus: float = 1, num_gpus: float = 0,
          max_ongoing_requests: int | None = None, max_queued_requests: int | None = None,
          resources: dict | None = None, max_replicas_per_node: int | None = None,
          proxy_location: str | None = None) -> Server:
    """Run the application and return once its replicas answer.

    ``address``: join that Ray cluster (``"auto"``, ``"127.0.0.1:6379"``); otherwise a local
    Ray instance is started with ``num_cpus`` (default: all) unless this process already runs
    one. The HTTP proxy binds ``host`` (default 127.0.0.1: only this machine can connect);
    ``proxy_location`` is Serve's (``EveryNode``, its default; ``HeadOnly`` when several Ray
    nodes share one machine and so one port).
    """
    import ray
    from ray import serve
    spec = {**DEFAULTS, **(spec or {})}
    opts = deployment_options(replicas if min_replicas is None else None, min_replicas, max_replicas,
                              replica_cpus, num_gpus, max_ongoing_requests, max_queued_requests,
                              int(spec["max_batch_size"]), resources)
    if max_replicas_per_node:
        opts["max_replicas_per_node"] = int(max_replicas_per_node)
    started = False
    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
            _init_local(num_cpus)
        started = True
    try:
        serve.start(http_options={"host": host, "port": int(port)},
                    **({"proxy_location": proxy_location} if proxy_location else {}))
        serve.run(build_app(spec, opts), name=APP_NAME, route_prefix="/")
    except BaseException:
        try:
            serve.shutdown()
        finally:
            if started:
                ray.shutdown()
        raise
    return Server(host, int(port), spec["name"], spec, opts, started, address)
