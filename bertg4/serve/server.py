"""Start and stop a bertg4 server: a local Ray instance (or an existing cluster), Serve's
HTTP proxy, and the application of :mod:`bertg4.serve.app`.

>>> srv = start({"model": "embedded", "task": "SST", "seq_length": 64}, port=8000)
>>> srv.url                      # 'http://127.0.0.1:8000'
>>> srv.stop()                   # Serve down; the local Ray instance too, when we started it

``direct_ingress=True`` starts the local Ray instance in Ray Serve's throughput-optimized
mode (``RAY_SERVE_THROUGHPUT_OPTIMIZED=1``): each replica also runs an HTTP server of its
own (Serve's "direct ingress", on 127.0.0.1 unless ``host`` says otherwise), listed in
``srv.direct_urls``. A client of one replica can send to it and skip the proxy's hop; in
front of several replicas, ``haproxy=True`` starts it with Serve's HAProxy ingress as well
(``RAY_SERVE_ENABLE_HA_PROXY=1``): HAProxy answers on ``port`` and spreads the requests over
the replicas' own servers with ``balance leastconn``, the dispatch the load records simulate.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from ..system import scoped_environ
from .app import DEFAULTS, build_app, deployment_options, haproxy_balance

APP_NAME = "bertg4"

#: what Ray Serve's throughput-optimized mode needs in the environment of the Ray processes:
#: the mode itself, and a short drain when a replica stops (Serve's default, 30 s, is for a
#: load balancer in front to notice; a local server stops at once)
DIRECT_INGRESS_ENV = {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1", "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "2"}
_DIRECT_RAY = False  # this process started the running local Ray instance in that mode

#: Serve's HAProxy ingress: HAProxy (its binary comes with Ray) on the server's port, in front of
#: the replicas' own servers, which it needs the throughput-optimized mode for
HAPROXY_ENV = {"RAY_SERVE_ENABLE_HA_PROXY": "1", **DIRECT_INGRESS_ENV}
_HAPROXY_RAY = False  # this process started the running local Ray instance with it
#: HAProxy's stats page and metrics exporter, which the config Ray writes binds on every
#: interface whatever the server's host (``bind *:`` in its template), at these ports unless
#: these variables move them
HAPROXY_OPEN_PORTS = {"RAY_SERVE_HAPROXY_STATS_PORT": 8404, "RAY_SERVE_HAPROXY_METRICS_PORT": 9101}


def haproxy_open_ports() -> dict[str, int]:
    """The ports of :data:`HAPROXY_OPEN_PORTS`, as this environment sets them."""
    return {k: int(os.environ.get(k, v)) for k, v in HAPROXY_OPEN_PORTS.items()}

#: a local Ray instance without Ray's metrics collection: with it on, the dashboard agent
#: gathers and exports metrics every 10 s, and on a machine of few cores each round takes
#: a core from the replicas for tens of ms, stalling one batch in every 10 s (seen as the
#: p99 of a load test: results/2026-12-02_cpu_serving_stall). A value the user set stays.
METRICS_OFF_ENV = {"RAY_enable_metrics_collection": "0"}


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
    direct_urls: list = field(default_factory=list)
    haproxy: bool = False
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
        batch = (f"{s['max_batch_tokens']} tokens" if s.get("max_batch_tokens") else f"{s['max_batch_size']}")
        return (f"serving model {self.name!r} ({what}) on {s['device']}, {scale}, max batch "
                f"{batch}, batch wait {s['batch_wait_ms']:g} ms, on {where}\n"
                f"listening on http://{self.host}:{self.port} (Open Inference Protocol: "
                f"POST {self.infer_url}, GET {self.url}/v2/models/{self.name})"
                + "".join(f"\nreplica's own HTTP server (direct ingress, no proxy hop): {u}" for u in self.direct_urls)
                + (f"\nHAProxy ingress (balance {haproxy_balance()}) on the port above, in front of the replicas' own "
                   "servers; its stats page and metrics exporter listen on every interface, at ports " +
                   " and ".join(f"{v} ({k})" for k, v in haproxy_open_ports().items())
                   + ("" if haproxy_balance() == "leastconn" else
                      "; the load records' simulator models leastconn, not this") if self.haproxy else ""))

    def stop(self) -> None:
        """Shut Serve down, and the Ray instance when this process started it."""
        if self.stopped:
            return
        import ray
        from ray import serve
        global _DIRECT_RAY, _HAPROXY_RAY
        try:
            serve.shutdown()
        finally:
            if self.started_ray:
                ray.shutdown()
                _DIRECT_RAY = _HAPROXY_RAY = False
            self.stopped = True


def start(spec: dict | None = None, host: str = "127.0.0.1", port: int = 8000, address: str | None = None,
          num_cpus: int | None = None, replicas: int | None = 1, min_replicas: int | None = None,
          max_replicas: int | None = None, replica_cpus: float = 1, num_gpus: float = 0,
          max_ongoing_requests: int | None = None, max_queued_requests: int | None = None,
          resources: dict | None = None, max_replicas_per_node: int | None = None,
          proxy_location: str | None = None, direct_ingress: bool = False,
          ray_metrics: bool = False, haproxy: bool = False) -> Server:
    """Run the application and return once its replicas answer.

    ``address``: join that Ray cluster (``"auto"``, ``"127.0.0.1:6379"``); otherwise a local
    Ray instance is started with ``num_cpus`` (default: all) unless this process already runs
    one. The HTTP proxy binds ``host`` (default 127.0.0.1: only this machine can connect);
    ``proxy_location`` is Serve's (``EveryNode``, its default; ``HeadOnly`` when several Ray
    nodes share one machine and so one port). ``direct_ingress``: see the module's text; it
    needs a Ray instance started here (or a cluster started with ``DIRECT_INGRESS_ENV``).
    ``ray_metrics``: keep Ray's metrics collection on in a local Ray instance started here
    (off by default, see ``METRICS_OFF_ENV``); a cluster joined with ``address`` keeps its own.
    ``haproxy``: a local Ray instance started here with Serve's HAProxy ingress (see the
    module's text; a cluster has it where its nodes were started with ``HAPROXY_ENV``).
    """
    import ray
    from ray import serve
    spec = {**DEFAULTS, **(spec or {})}
    opts = deployment_options(replicas if min_replicas is None else None, min_replicas, max_replicas,
                              replica_cpus, num_gpus, max_ongoing_requests, max_queued_requests,
                              int(spec["max_batch_size"]), resources)
    if max_replicas_per_node:
        opts["max_replicas_per_node"] = int(max_replicas_per_node)
    global _DIRECT_RAY, _HAPROXY_RAY
    started = False
    if haproxy:
        check_haproxy(direct_ingress, address, ray.is_initialized() and not _HAPROXY_RAY
                      and os.environ.get("RAY_SERVE_ENABLE_HA_PROXY") != "1")
    elif direct_ingress and not address and ray.is_initialized() and _HAPROXY_RAY:
        check_haproxy(True, None, False)  # the running instance has HAProxy in front: no direct ingress
    if direct_ingress and not address and ray.is_initialized() and not _DIRECT_RAY \
            and os.environ.get("RAY_SERVE_THROUGHPUT_OPTIMIZED") != "1":
        raise ValueError("direct_ingress: Ray already runs in this process without Ray Serve's "
                         "throughput-optimized mode; it must be switched on before Ray starts "
                         "(RAY_SERVE_THROUGHPUT_OPTIMIZED=1), e.g. by `bertg4 serve --direct-ingress`")
    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
            # inherited by the Ray processes started now, and only by them (a drain time or a
            # metrics setting the user set stays theirs)
            wanted = {**(DIRECT_INGRESS_ENV if direct_ingress else {}), **(HAPROXY_ENV if haproxy else {}),
                      **({} if ray_metrics else METRICS_OFF_ENV)}
            env = {k: (v if k in ("RAY_SERVE_THROUGHPUT_OPTIMIZED", "RAY_SERVE_ENABLE_HA_PROXY")
                       else os.environ.get(k, v)) for k, v in wanted.items()}
            with scoped_environ(env):
                _init_local(num_cpus)
            _DIRECT_RAY, _HAPROXY_RAY = bool(direct_ingress), bool(haproxy)
        started = True
    try:
        if started and not address:  # a local instance has what it has: no autoscaler adds nodes
            check_fits(opts, ray.cluster_resources(), num_cpus)
        serve.start(http_options={"host": host, "port": int(port)},
                    **({"proxy_location": proxy_location} if proxy_location else {}))
        serve.run(build_app(spec, opts), name=APP_NAME, route_prefix="/")
        direct = direct_ingress_urls(host, int(port), local=not address) if direct_ingress else []
        if direct is None:
            raise RuntimeError("direct ingress was asked for, but Serve's controller did not list the "
                               "replicas' servers (this Ray has no get_target_groups)")
        if direct_ingress and not direct:
            raise RuntimeError("direct ingress was asked for, but no replica runs an HTTP server of its own: "
                               "the Ray cluster must be started with " +
                               " ".join(f"{k}={v}" for k, v in DIRECT_INGRESS_ENV.items()))
    except BaseException:
        try:
            if started and not address:
                serve.shutdown()
            else:  # a cluster or Serve instance we joined: take only our application away
                try:
                    serve.delete(APP_NAME)
                except Exception:  # noqa: BLE001 - it may never have been deployed
                    pass
        finally:
            if started:
                ray.shutdown()
                _DIRECT_RAY = _HAPROXY_RAY = False
        raise
    return Server(host, int(port), spec["name"], spec, opts, started, address, direct,
                  bool(haproxy or (not address and _HAPROXY_RAY)))


def check_haproxy(direct_ingress: bool, address: str | None, ray_running_without: bool) -> None:
    """Refuse an HAProxy ingress that could not be what was asked for."""
    if direct_ingress:
        raise ValueError("haproxy with direct_ingress (--haproxy, --direct-ingress): with HAProxy in front the "
                         "port is HAProxy's and Serve lists no replica servers to send to directly; give one")
    env = " ".join(f"{k}={v}" for k, v in HAPROXY_ENV.items())
    if address:
        raise ValueError(f"haproxy with address {address!r} (--haproxy, --address): the ingress is the cluster's "
                         f"own setting; start every Ray node with {env} in its environment, and serve there "
                         "without --haproxy")
    if ray_running_without:
        raise ValueError("haproxy: Ray already runs in this process without Serve's HAProxy ingress; it must be "
                         f"switched on before Ray starts ({env}), e.g. by `bertg4 serve --haproxy`")


def check_fits(opts: dict, resources: dict, num_cpus: int | None = None) -> None:
    """Refuse replicas that a local Ray instance of ``resources`` (``ray.cluster_resources()``)
    could never place: Serve would wait for them without end. The replicas counted are the
    fixed number, or the autoscaling lower bound; each reserves its CPUs and GPUs."""
    n = opts.get("num_replicas")
    if n is None:
        n = opts.get("autoscaling_config", {}).get("min_replicas", 0)
    actor = opts.get("ray_actor_options", {})
    for key, res, flag in (("num_cpus", "CPU", "--replica-cpus"), ("num_gpus", "GPU", "--num-gpus")):
        per, have = float(actor.get(key) or 0), float(resources.get(res, 0))
        if n * per > have + 1e-9:
            given = f" (--num-cpus {num_cpus})" if res == "CPU" and num_cpus else ""
            more = "a larger --num-cpus, " if res == "CPU" and num_cpus else ""
            raise ValueError(f"{n} replica(s) x {per:g} {res} each ({flag}) need {n * per:g} {res}, but the local "
                             f"Ray instance has {have:g}{given}: fewer replicas, fewer {res}s per replica, {more}"
                             "or --address to join a cluster")


def direct_ingress_urls(host: str = "127.0.0.1", proxy_port: int | None = None,
                        app_name: str = APP_NAME, local: bool = True) -> list[str] | None:
    """The URLs of the replicas' own HTTP servers (Serve's direct ingress), from the
    controller's target groups (the list Serve's HAProxy ingress is fed with); empty when
    the mode is off, where the only target is the proxy. Serve has no public call for this
    yet: None when the call is not there. ``local``: every replica runs on this machine
    (a local Ray instance), so a server bound to 127.0.0.1 is reached there."""
    import ray
    try:
        from ray.serve.context import _get_global_client
        controller = _get_global_client()._controller
        if not hasattr(controller, "get_target_groups"):
            return None
        groups = ray.get(controller.get_target_groups.remote(app_name), timeout=30)
    except (ImportError, AttributeError):
        return None
    urls = []
    for g in groups:
        if getattr(g.protocol, "value", g.protocol) != "HTTP":
            continue
        for t in g.targets:
            if t.port == proxy_port:  # the proxy itself: the only target when the mode is off
                continue
            ip = "127.0.0.1" if local and host in ("127.0.0.1", "localhost") else t.ip
            urls.append(f"http://{ip}:{t.port}")
    return sorted(set(urls))
