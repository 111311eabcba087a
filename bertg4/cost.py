"""What a million requests cost: instance prices, $/1M from measured throughput, and
the cost of meeting a latency target (p99 SLO) with dynamic batching.

Three layers, each a pure function of the ones before it:

- a price catalogue (:data:`CATALOGUE`, :func:`instance`, :func:`parse_instance`),
  every price carrying its source and date;
- :func:`cost_per_million` and :func:`cost_table`: bench records (throughput at full
  load) priced per instance. A record is *measured* at an instance only when that
  instance's hardware ran it (:func:`same_hardware`) or at a price you give for the machine
  that ran it (:func:`this_machine`); any other price is *hypothetical* and kept in a table
  of its own. :func:`batch_points` picks the article's batch size (128) and the cheapest
  batch. The article's published figures (:data:`ARTICLE_REFERENCE`) are quoted, never
  mixed with measurements;
- :func:`simulate`, :func:`max_rate_for_slo`, :func:`slo_cost`, :func:`cost_at_rate`: a
  single server with dynamic batching fed by Poisson arrivals, driven by a measured
  latency-vs-batch-size curve, to find the highest request rate that still meets a p99
  latency target and what a million requests cost at that rate (or at a given rate).
"""
from __future__ import annotations

import bisect
import math
import re
from dataclasses import dataclass
from typing import Iterable, Mapping

import numpy as np

ARTICLE_SOURCE = ("AWS blog 'BERT inference on G4 instances using Apache MXNet and GluonNLP: "
                  "1 million requests for 20 cents' (2020)")
CURRENT_SOURCE = ("AWS EC2 on-demand list price, us-east-1, Linux, as of 2025 "
                  "(aws.amazon.com/ec2/pricing/on-demand); check the current price before relying on it")
P5_SOURCE = ("approximate AWS EC2 on-demand price for p5.4xlarge (1x H100), us-east-1, Linux, as of "
             "2025; must be checked on aws.amazon.com/ec2/pricing/on-demand")


# --------------------------------------------------------------------------------------
# Instance catalogue
# --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Instance:
    """An instance type and its hourly price, with where and when the price was read.

    ``name`` is the catalogue key: the instance type, with ``@2020`` for the prices the
    2020 article used. ``gpu`` is ``None`` for CPU-only instances. ``host``, when set, makes
    this the price of one machine: records whose ``host`` is that name ran on it
    (:func:`this_machine`).
    """
    name: str
    price_per_hour: float
    region: str
    gpu: str | None
    vcpus: int | None
    source: str
    date: str
    host: str | None = None

    @property
    def instance_type(self) -> str:
        """The EC2 type without the catalogue suffix (``g4dn.xlarge@2020`` -> ``g4dn.xlarge``)."""
        return self.name.split("@", 1)[0]


_ENTRIES = (
    Instance("g4dn.xlarge@2020", 0.526, "us-east-1", "NVIDIA T4", 4, ARTICLE_SOURCE, "2020"),
    Instance("c5.xlarge@2020", 0.17, "us-east-1", None, 4, ARTICLE_SOURCE, "2020"),
    Instance("c5.24xlarge@2020", 4.08, "us-east-1", None, 96, ARTICLE_SOURCE, "2020"),
    Instance("m5.xlarge@2020", 0.192, "us-east-1", None, 4, ARTICLE_SOURCE, "2020"),
    Instance("g4dn.xlarge", 0.526, "us-east-1", "NVIDIA T4", 4, CURRENT_SOURCE, "2025"),
    Instance("g5.xlarge", 1.006, "us-east-1", "NVIDIA A10G", 4, CURRENT_SOURCE, "2025"),
    Instance("g6.xlarge", 0.8048, "us-east-1", "NVIDIA L4", 4, CURRENT_SOURCE, "2025"),
    Instance("p5.4xlarge", 6.88, "us-east-1", "NVIDIA H100", 16, P5_SOURCE, "2025"),
)
CATALOGUE: dict[str, Instance] = {i.name: i for i in _ENTRIES}


def instance(name: str) -> Instance:
    """The catalogue entry called ``name`` (e.g. ``"g4dn.xlarge"`` or ``"g4dn.xlarge@2020"``)."""
    try:
        return CATALOGUE[name]
    except KeyError:
        raise KeyError(f"unknown instance {name!r}; known: {', '.join(CATALOGUE)} "
                       f"(or give a price: '{name}=<dollars per hour>')") from None


def _positive_price(value, what: str) -> float:
    try:
        price = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"price for {what} must be a number of dollars per hour, got {value!r}") from None
    if not math.isfinite(price) or price <= 0:
        raise ValueError(f"price for {what} must be a positive, finite number of dollars per hour, "
                         f"got {value!r}")
    return price


def custom_instance(name: str, price_per_hour: float, region: str = "user", gpu: str | None = None,
                    vcpus: int | None = None, source: str = "user-supplied price",
                    date: str = "user") -> Instance:
    """An instance with a price you supply (a spot price, a discount, another cloud).

    When ``name`` is a catalogue type, its GPU and vCPUs are kept unless given.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"instance name must be a non-empty string, got {name!r}")
    name = name.strip()
    price = _positive_price(price_per_hour, repr(name))
    known = CATALOGUE.get(name) or next((i for i in _ENTRIES if i.instance_type == name), None)
    if known is not None:
        gpu = gpu if gpu is not None else known.gpu
        vcpus = vcpus if vcpus is not None else known.vcpus
    return Instance(name, price, region, gpu, vcpus, source, date)


THIS_MACHINE = "this-machine"
THIS_MACHINE_SOURCE = "user-supplied price for the machine that ran the measurement"


def this_machine(price_per_hour: float, host: str | None = None, name: str = THIS_MACHINE) -> Instance:
    """The price you pay per hour for the machine that ran the records (``host``: its
    ``platform.node()`` name, as records store it; default this machine's).

    Every record measured on that host is priced at it as a measurement, whatever its
    device (the GPU and the CPU of one machine cost one price).
    """
    import platform
    price = _positive_price(price_per_hour, repr(name))
    host = platform.node() if host is None else host
    if not isinstance(host, str) or not host:
        raise ValueError(f"host must be the non-empty name of the machine that ran the records, got {host!r}")
    return Instance(name, price, "user", None, None, THIS_MACHINE_SOURCE, "user", host=host)


def parse_instance(spec: str | Instance) -> Instance:
    """``"g5.xlarge"`` (catalogue), ``"g5.xlarge=0.45"`` (your price for that type, $/hour) or
    ``"this-machine=0.45"`` (your price for this machine: :func:`this_machine`) -> Instance."""
    if isinstance(spec, Instance):
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"instance spec must be a string like 'g5.xlarge' or 'g5.xlarge=0.45', got {spec!r}")
    if "=" not in spec:
        return instance(spec.strip())
    name, _, price = spec.partition("=")
    if not name.strip():
        raise ValueError(f"instance spec {spec!r} has no name before '='; expected 'name=price'")
    if name.strip() == THIS_MACHINE:
        return this_machine(price.strip())
    return custom_instance(name, price.strip())


# --------------------------------------------------------------------------------------
# $ per million at full load
# --------------------------------------------------------------------------------------

def cost_per_million(price_per_hour: float, sequences_per_s: float) -> float:
    """Dollars per 1M sequences: price/h ÷ (sequences/s × 3600) × 1e6."""
    price = _positive_price(price_per_hour, "cost_per_million")
    try:
        rate = float(sequences_per_s)
    except (TypeError, ValueError):
        raise ValueError(f"sequences_per_s must be a number, got {sequences_per_s!r}") from None
    if not math.isfinite(rate) or rate <= 0:
        raise ValueError(f"sequences_per_s must be positive and finite, got {sequences_per_s!r}")
    return price / (rate * 3600.0) * 1e6


#: How a GPU's name appears in the ``device_name`` of records measured on it (torch's
#: ``get_device_name``). Strict: an A10 is not an A10G, an L40S is not an L4, and a p5's H100
#: is the SXM part (``NVIDIA H100 80GB HBM3``), not the PCIe or NVL cards.
GPU_PATTERNS = {
    "NVIDIA T4": r"\bT4\b",
    "NVIDIA A10G": r"\bA10G\b",
    "NVIDIA L4": r"\bL4\b",
    "NVIDIA H100": r"\bH100\b(?!.*\b(PCIe|NVL)\b)",
}


def _gpu_pattern(gpu: str) -> str:
    return GPU_PATTERNS.get(gpu) or rf"\b{re.escape(gpu.split()[-1])}\b"


def same_hardware(record: Mapping, inst: Instance) -> bool:
    """True only when ``inst``'s hardware ran ``record``.

    - a :func:`this_machine` price (``inst.host``): the record's ``host`` is that machine;
    - a record that names its ``instance`` (type or catalogue name): that type, nothing else;
    - a GPU instance: a record measured on a CUDA device whose ``device_name`` is that GPU
      (:data:`GPU_PATTERNS`);
    - a CPU instance: never from the CPU's name alone (a Xeon is not a c5); the record must
      name its instance.
    """
    if inst.host is not None:
        return record.get("host") == inst.host
    named = record.get("instance")
    if named:
        return str(named).split("@", 1)[0] == inst.instance_type
    if inst.gpu is None:
        return False
    device = str(record.get("device") or "cuda")
    if not device.startswith("cuda"):
        return False
    name = str(record.get("device_name") or "")
    return re.search(_gpu_pattern(inst.gpu), name, flags=re.IGNORECASE) is not None


_same_hardware = same_hardware  # the name earlier code used


def workload(record: Mapping) -> str:
    """``"real traffic"`` for records timed on real requests (a ``traffic`` field: lengths as
    they come, padded per batch), ``"fixed shape"`` for records padded to ``seq_length``."""
    return "real traffic" if record.get("traffic") else "fixed shape"


#: fields of real-traffic records carried into the cost rows
TRAFFIC_FIELDS = ("traffic", "padding", "sentences_per_s", "tokens_per_s", "padding_waste")


def _rate(r: Mapping) -> float:
    rate = r.get("sequences_per_s")
    if rate is None:
        rate = r.get("sentences_per_s")
    if rate is None:
        raise ValueError(f"record {r.get('engine')}/{r.get('recipe')} batch {r.get('batch_size')} "
                         "has status ok but no sequences_per_s")
    return float(rate)


def cost_table(records: Iterable[Mapping], instances: Iterable[Instance | str],
               hypothetical: bool = True) -> list[dict]:
    """Price every successful record at every instance: one row per (record, instance).

    Records whose ``status`` is ``"ok"`` (or absent, as in ``bertg4 deploy`` records) are
    priced; others (not applicable, skipped) are left out. A row's ``kind`` is
    ``"measured"`` when the instance's hardware ran the record (:func:`same_hardware`) and
    ``"hypothetical"`` otherwise: a CPU's throughput at a T4 instance's price says nothing
    about a T4. ``hypothetical=False`` leaves those rows out. ``measured_on`` is the device
    the record ran on; ``workload`` says fixed shape or real traffic (whose
    :data:`TRAFFIC_FIELDS` are carried along).
    """
    insts = [parse_instance(i) for i in instances]
    if not insts:
        raise ValueError("no instances to price at; pass names from CATALOGUE or 'name=price'")
    rows = []
    for r in records:
        if r.get("status", "ok") != "ok":
            continue
        rate = _rate(r)
        for inst in insts:
            own = same_hardware(r, inst)
            if not own and not hypothetical:
                continue
            rows.append({
                "kind": "measured" if own else "hypothetical", "instance": inst.name,
                "price_per_hour": inst.price_per_hour, "price_source": inst.source,
                "price_date": inst.date, "instance_gpu": inst.gpu,
                "engine": r.get("engine"), "recipe": r.get("recipe"), "model": r.get("model"),
                "dtype": r.get("dtype"), "batch_size": r.get("batch_size"),
                "seq_length": r.get("seq_length"), "sequences_per_s": rate,
                "dollars_per_million": cost_per_million(inst.price_per_hour, rate),
                "measured_on": r.get("device_name"), "device": r.get("device"), "host": r.get("host"),
                "iterations": r.get("iterations"), "hypothetical": not own, "workload": workload(r),
                **{k: r[k] for k in TRAFFIC_FIELDS if k in r},
            })
    return rows


ARTICLE_BATCH_SIZE = 128
_GROUP = ("kind", "instance", "engine", "recipe", "model", "dtype", "seq_length", "measured_on",
          "workload", "traffic", "padding")


def batch_points(rows: Iterable[Mapping], batch_size: int = ARTICLE_BATCH_SIZE) -> list[dict]:
    """For each (instance, engine, recipe, sequence length, device, workload) of
    :func:`cost_table` rows: the row at ``batch_size`` (the article priced batch 128) and the
    cheapest row, each with a ``point`` saying which it is (one row when they coincide).

    A group without ``batch_size`` gets a row saying so (``dollars_per_million`` None,
    ``point`` "batch 128 (the article's): not measured (measured: ...)").
    """
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if r.get("kind") == "reference":
            raise ValueError("reference rows are quoted figures, not measurements: keep them apart")
        groups.setdefault(tuple(r.get(k) for k in _GROUP), []).append(dict(r))
    article = f"batch {batch_size} (the article's)"
    out = []
    for group in groups.values():
        best = min(group, key=lambda r: r["dollars_per_million"])
        at = next((r for r in group if r.get("batch_size") == batch_size), None)
        if at is None:
            sizes = ", ".join(str(s) for s in sorted({r.get("batch_size") for r in group}, key=str))
            out.append({**best, "batch_size": batch_size, "sequences_per_s": None,
                        "dollars_per_million": None, "iterations": None,
                        "point": f"{article}: not measured (measured: {sizes})"})
        elif at is not best:
            out.append({**at, "point": article})
        out.append({**best, "point": f"{article}; cheapest" if at is best else "cheapest batch"})
    return out


def _reference(instance_name: str, dollars: float, measured_on: str) -> dict:
    inst = CATALOGUE[instance_name]
    return {"kind": "reference", "source": ARTICLE_SOURCE, "instance": inst.name,
            "price_per_hour": inst.price_per_hour, "price_source": inst.source, "price_date": inst.date,
            "instance_gpu": inst.gpu, "engine": "MXNet + GluonNLP", "recipe": "as published",
            "model": "bert_12_768_12", "dtype": None, "batch_size": 128, "seq_length": 128,
            "sequences_per_s": None, "dollars_per_million": dollars, "measured_on": measured_on,
            "hypothetical": False, "workload": "fixed shape"}


#: The article's published cost figures for BERT-base at sequence length 128 (quoted, not measured here).
ARTICLE_REFERENCE: tuple[dict, ...] = (
    _reference("g4dn.xlarge@2020", 0.20, "NVIDIA T4 (article)"),
    _reference("c5.xlarge@2020", 3.31, "c5.xlarge CPU (article)"),
)


def _fmt(x, spec: str) -> str:
    return "—" if x is None else format(x, spec)


_SECTIONS = (
    ("measured", "measured",
     "**Measured**: each record priced at an instance whose hardware ran it, or at the price "
     "given for the machine that ran it."),
    ("hypothetical", "hypothetical",
     "**Hypothetical, not measured**: a throughput measured on one device priced at an instance "
     "whose hardware did not run it. It says what *that device's* speed would cost at that "
     "price, not what the instance costs; never compare it with the measured rows."),
    ("reference", "article (reference)",
     "**The article's figures**: quoted from the article (2020 prices), not measured here."),
)


def cost_markdown(rows: Iterable[Mapping], reference: Iterable[Mapping] = ARTICLE_REFERENCE) -> str:
    """Markdown: the measured rows, then the hypothetical rows in a table of their own, then
    the article's figures labelled ``article (reference)``, then the source of every price.

    Each row is labelled in its first column too. Real-traffic rows (``workload``) show their
    padding mode, sentences/s, tokens/s and padding waste (computed tokens per real token)
    beside the fixed-shape rows; rows from
    :func:`batch_points` show their ``point``.
    """
    rows, reference = list(rows), list(reference)
    if any(r.get("kind") == "reference" for r in rows):
        raise ValueError("reference rows belong in `reference`, not among the measured rows")
    if any(r.get("kind") != "reference" for r in reference):
        raise ValueError("`reference` holds quoted figures (kind 'reference') only")
    traffic = any(r.get("workload") == "real traffic" for r in rows)
    point = any(r.get("point") for r in rows)
    head = "| | workload | instance | $/hour | GPU | engine / recipe | batch | seq | seq/s | "
    align = "|---|---|---|---:|---|---|---:|---:|---:|"
    if traffic:
        head += "padding | sentences/s | tokens/s | computed / real tokens | "
        align += "---|---:|---:|---:|"
    if point:
        head += "point | "
        align += "---|"
    head += "$ per 1M | measured on |"
    align += "---:|---|"

    def line(r, label):
        what = r.get("workload") or "fixed shape"
        if r.get("traffic"):
            what += f" ({r['traffic']})"
        cells = [label, what, r["instance"], f"{r['price_per_hour']:.4g}",
                 r.get("instance_gpu") or ("—" if r.get("price_source") == THIS_MACHINE_SOURCE else "CPU"),
                 f"{r.get('engine')} / {r.get('recipe')}",
                 _fmt(r.get("batch_size"), "d"), _fmt(r.get("seq_length"), "d"),
                 _fmt(r.get("sequences_per_s"), ".1f")]
        if traffic:
            waste = r.get("padding_waste")
            cells += [str(r.get("padding") or "—"), _fmt(r.get("sentences_per_s"), ".1f"),
                      _fmt(r.get("tokens_per_s"), ".0f"), "—" if waste is None else f"{waste:.2f}×"]
        if point:
            cells.append(r.get("point") or "")
        dollars = r.get("dollars_per_million")
        cells += ["not measured" if dollars is None else f"{dollars:.3f}", str(r.get("measured_on") or "—")]
        return "| " + " | ".join(cells) + " |"

    parts = []
    for kind, label, intro in _SECTIONS:
        chosen = reference if kind == "reference" else [r for r in rows if r.get("kind", "measured") == kind]
        if not chosen:
            if kind == "measured":
                parts.append(intro + "\n\nNone: no record here ran on the hardware of an instance "
                             "priced, and no price was given for the machine that ran them "
                             f"(`{THIS_MACHINE}=PRICE`).")
            continue
        parts.append("\n".join([intro, "", head, align] + [line(r, label) for r in chosen]))
    sources = {}
    for r in rows + reference:
        sources.setdefault(r["instance"], (r["price_per_hour"], r.get("price_source"), r.get("price_date")))
    parts.append("\n".join(f"- {name}: ${p:g}/hour — {src} ({date})" for name, (p, src, date) in sources.items()))
    return "\n\n".join(parts)


# --------------------------------------------------------------------------------------
# Latency targets: dynamic batching under Poisson load
# --------------------------------------------------------------------------------------

def check_curve(curve: Mapping[int, float]) -> dict[int, float]:
    """Validate a latency curve ``{batch_size: seconds per batch}`` and return it sorted."""
    if not isinstance(curve, Mapping) or not curve:
        raise ValueError(f"curve must be a non-empty dict {{batch_size: seconds per batch}}, got {curve!r}")
    out = {}
    for b, t in curve.items():
        if isinstance(b, bool) or not isinstance(b, (int, np.integer)) or b < 1:
            raise ValueError(f"curve batch sizes must be integers >= 1, got {b!r}")
        t = float(t)
        if not math.isfinite(t) or t <= 0:
            raise ValueError(f"curve service time for batch {b} must be positive seconds, got {curve[b]!r}")
        out[int(b)] = t
    return dict(sorted(out.items()))


def service_times(curve: Mapping[int, float], max_batch: int) -> np.ndarray:
    """Seconds to serve a batch of k = 0..max_batch requests (index k; entry 0 unused).

    Linear interpolation between measured sizes; below the smallest measured size the
    smallest size's time (the batch is padded up). Beyond the largest it is an error.
    """
    c = check_curve(curve)
    if isinstance(max_batch, bool) or not isinstance(max_batch, (int, np.integer)) or max_batch < 1:
        raise ValueError(f"max_batch must be an integer >= 1, got {max_batch!r}")
    sizes = list(c)
    if max_batch > sizes[-1]:
        raise ValueError(f"max_batch={max_batch} is beyond the largest measured batch size {sizes[-1]} "
                         f"(measured: {sizes}); measure it rather than extrapolate")
    k = np.arange(max_batch + 1, dtype=np.float64)
    out = np.interp(k, np.asarray(sizes, dtype=np.float64), np.asarray(list(c.values())))
    out[0] = 0.0
    return out


def service_curve(records: Iterable[Mapping], stat: str = "latency_ms_mean") -> dict[int, float]:
    """``{batch_size: seconds per batch}`` from bench records of one engine, recipe, sequence
    length, dtype and device (``stat`` is the per-batch latency column, in ms)."""
    ok = [r for r in records if r.get("status", "ok") == "ok"]
    if not ok:
        raise ValueError("no successful records to build a latency curve from")
    keys = ("engine", "recipe", "seq_length", "dtype", "device_name")
    groups = {tuple(r.get(k) for k in keys) for r in ok}
    if len(groups) > 1:
        raise ValueError(f"records mix several configurations {sorted(map(str, groups))}; "
                         f"filter them to one ({', '.join(keys)})")
    curve = {}
    for r in ok:
        if stat not in r:
            raise ValueError(f"record for batch {r.get('batch_size')} has no {stat!r}")
        if r["batch_size"] in curve:
            raise ValueError(f"two records for batch size {r['batch_size']}")
        curve[int(r["batch_size"])] = float(r[stat]) / 1e3
    return check_curve(curve)


def _arrivals(n_requests: int, rate: float, seed: int) -> np.ndarray:
    gaps = np.random.default_rng(seed).exponential(1.0, n_requests)
    return np.cumsum(gaps) / rate


def simulate(curve: Mapping[int, float], rate: float, max_batch: int, max_wait_s: float = 0.0,
             n_requests: int = 100_000, seed: int = 0, warmup_fraction: float = 0.05) -> dict:
    """One server with dynamic batching fed by a Poisson stream of ``rate`` requests/s.

    When the server is idle and requests are queued, it starts a batch as soon as
    ``max_batch`` requests are queued or the oldest has waited ``max_wait_s``, and takes
    up to ``max_batch`` of them; a batch of k takes ``curve``'s service time for k.
    Latency is per request, arrival to end of its batch; the first ``warmup_fraction``
    of requests (queue starting empty) is left out of the latency statistics.
    ``utilization`` is the fraction of time the server is busy (with small batches it can
    be near 1 well below saturation); ``throughput_per_s`` is requests served per second.
    ``stable`` is False when ``rate`` reaches the saturation throughput
    ``max_batch / service(max_batch)``: the queue then grows without bound.
    """
    svc = service_times(curve, max_batch)
    rate = float(rate)
    if not math.isfinite(rate) or rate <= 0:
        raise ValueError(f"rate must be positive requests per second, got {rate!r}")
    if not (max_wait_s >= 0 and math.isfinite(max_wait_s)):
        raise ValueError(f"max_wait_s must be >= 0 seconds, got {max_wait_s!r}")
    if n_requests < 2:
        raise ValueError(f"n_requests must be >= 2, got {n_requests!r}")
    if not 0 <= warmup_fraction < 1:
        raise ValueError(f"warmup_fraction must be in [0, 1), got {warmup_fraction!r}")
    arr = _arrivals(int(n_requests), rate, seed)
    a, s, n, B, w = arr.tolist(), svc.tolist(), len(arr), int(max_batch), float(max_wait_s)
    ends, sizes = [], []
    i, free, busy = 0, 0.0, 0.0
    while i < n:
        trigger = a[i] + w
        j = i + B - 1
        if j < n and a[j] < trigger:
            trigger = a[j]
        start = free if free > trigger else trigger
        end = bisect.bisect_right(a, start, i, min(i + B, n))
        d = s[end - i]
        free = start + d
        busy += d
        ends.append(free)
        sizes.append(end - i)
        i = end
    latency = np.repeat(np.asarray(ends), sizes) - arr
    kept = latency[int(warmup_fraction * n):]
    span = free - float(arr[0])
    capacity = B / s[B]
    p50, p90, p99 = np.percentile(kept, [50, 90, 99])
    return {"rate_per_s": rate, "max_batch": B, "max_wait_s": w, "n_requests": n,
            "latency_s_mean": float(kept.mean()), "latency_s_p50": float(p50),
            "latency_s_p90": float(p90), "latency_s_p99": float(p99),
            "utilization": busy / span, "throughput_per_s": n / span,
            "mean_batch_size": n / len(sizes), "capacity_per_s": capacity, "stable": rate < capacity}


def _search(curve, targets, max_batch, max_wait_s, n_requests, seed, max_utilization, rtol,
            memo: dict) -> list[dict]:
    """Highest rate meeting each p99 target for one (max_batch, max_wait_s); shares simulations."""
    if not 0 < max_utilization <= 1:
        raise ValueError(f"max_utilization must be in (0, 1], got {max_utilization!r}")
    svc = service_times(curve, max_batch)
    capacity = max_batch / float(svc[max_batch])
    zero_load = float(svc[1]) + (max_wait_s if max_batch > 1 else 0.0)

    def run(rate: float) -> dict:
        key = (max_batch, max_wait_s, rate)
        if key not in memo:
            memo[key] = simulate(curve, rate, max_batch, max_wait_s, n_requests, seed)
        return memo[key]

    def passes(rate: float, target: float) -> bool:
        if rate <= 0:
            return zero_load <= target
        if rate >= capacity:
            return False
        return run(rate)["latency_s_p99"] <= target

    top = max_utilization * capacity
    grid = [0.0] + [top * f for f in np.linspace(0.1, 1.0, 10).tolist()]
    out = []
    for target in targets:
        ok = [r for r in grid if passes(r, target)]
        if not ok:
            out.append({"p99_target_s": target, "max_rate_per_s": 0.0, "sim": None})
            continue
        lo = ok[-1]
        if lo < top:
            hi = grid[grid.index(lo) + 1]
            for _ in range(30):
                if hi - lo <= rtol * hi:
                    break
                mid = 0.5 * (lo + hi)
                lo, hi = (mid, hi) if passes(mid, target) else (lo, mid)
        out.append({"p99_target_s": target, "max_rate_per_s": lo, "sim": run(lo) if lo > 0 else None})
    return out


def _check_targets(targets) -> list[float]:
    given = list(targets)
    try:
        ts = [float(t) for t in given]
    except (TypeError, ValueError):
        raise ValueError(f"p99 targets must be numbers of seconds, got {given!r}") from None
    if not ts or any(not (t > 0 and math.isfinite(t)) for t in ts):
        raise ValueError(f"p99 targets must be positive seconds, got {given!r}")
    return ts


def max_rate_for_slo(curve: Mapping[int, float], p99_target_s: float, max_batch: int,
                     max_wait_s: float = 0.0, n_requests: int = 20_000, seed: int = 0,
                     max_utilization: float = 0.95, rtol: float = 0.01) -> dict:
    """The highest Poisson arrival rate (requests/s) whose simulated p99 latency is within
    ``p99_target_s``, for one server with the given batching settings.

    Rates are searched up to ``max_utilization`` × saturation throughput (close to
    saturation a finite simulation cannot estimate the tail); rates at or above
    saturation, where the queue is unstable, fail without being simulated. The highest passing point of a coarse grid is refined by bisection
    to ``rtol``; every rate uses the same random arrivals, so a looser target never gives
    a lower rate. ``max_rate_per_s`` is 0 when no rate meets the target.
    """
    (target,) = _check_targets([p99_target_s])
    (res,) = _search(curve, [target], max_batch, float(max_wait_s), n_requests, seed,
                     max_utilization, rtol, {})
    return {**res, "max_batch": max_batch, "max_wait_s": float(max_wait_s)}


def slo_cost(curve: Mapping[int, float], price_per_hour: float | Instance | str, targets: Iterable[float],
             settings: Iterable[tuple[int, float]] | None = None, label: str | None = None,
             n_requests: int = 20_000, seed: int = 0, max_utilization: float = 0.95,
             measured_on: Mapping | None = None) -> list[dict]:
    """Dollars per 1M requests when one instance serves at the highest rate that meets each
    p99 target, with the best of several batching settings.

    ``settings``: ``(max_batch, max_wait_s)`` pairs; by default every measured batch size
    with max_wait 0, 10 % and 30 % of the target. ``price_per_hour`` may be a number, an
    :class:`Instance` or a catalogue/``name=price`` spec; ``label`` names the row's
    ``instance`` (default: the instance name, or "custom"). One row per target;
    ``dollars_per_million`` is None when no setting meets the target, and
    ``dollars_per_million_no_slo`` is the cost at saturation throughput (no target).
    ``measured_on``: a record the curve was measured with (its ``device_name``, ``device``,
    ``host``); the rows then say which device measured the curve (``measured_on``) and
    whether the price is for other hardware (``hypothetical``, see :func:`same_hardware`).
    """
    inst = None
    if isinstance(price_per_hour, (Instance, str)):
        inst = parse_instance(price_per_hour)
        price, label = inst.price_per_hour, label or inst.name
    else:
        price, label = _positive_price(price_per_hour, "slo_cost"), label or "custom"
    where = {}
    if measured_on is not None:
        where = {"measured_on": measured_on.get("device_name"),
                 "hypothetical": None if inst is None else not same_hardware(measured_on, inst)}
    c = check_curve(curve)
    ts = list(dict.fromkeys(_check_targets(targets)))
    if settings is not None:
        pairs = [(int(b), float(w)) for b, w in settings]
        if not pairs:
            raise ValueError("settings is empty; give (max_batch, max_wait_s) pairs or None for the defaults")
    memo: dict = {}  # simulations shared between targets
    rows = []
    for t in ts:
        tried = pairs if settings is not None else [(b, f * t) for b in c for f in (0.0, 0.1, 0.3)]
        results = [{**_search(c, [t], b, w, n_requests, seed, max_utilization, 0.01, memo)[0],
                    "max_batch": b, "max_wait_s": w} for b, w in tried]
        best = max(results, key=lambda r: r["max_rate_per_s"])
        capacity = max(b / float(service_times(c, b)[b]) for b, _ in tried)
        rate, sim = best["max_rate_per_s"], best["sim"]
        rows.append({
            "instance": label, "price_per_hour": price, "p99_target_s": t,
            "max_batch": best["max_batch"], "max_wait_s": best["max_wait_s"], "max_rate_per_s": rate,
            "latency_s_p99": sim["latency_s_p99"] if sim else None,
            "utilization": sim["utilization"] if sim else None,
            "mean_batch_size": sim["mean_batch_size"] if sim else None,
            "dollars_per_million": cost_per_million(price, rate) if rate > 0 else None,
            "dollars_per_million_no_slo": cost_per_million(price, capacity),
            "settings_tried": len(tried), **where,
        })
    return rows


def cost_at_rate(curve: Mapping[int, float], price_per_hour: float | Instance | str, rate: float,
                 max_batch: int, max_wait_s: float = 0.0, n_requests: int = 20_000,
                 seed: int = 0) -> dict:
    """What a million requests cost when they arrive at ``rate`` per second (Poisson) and one
    instance serves them with these batching settings: the :func:`simulate` result plus
    ``dollars_per_million`` (price per hour over the requests served per hour; the idle time
    of a lightly loaded server is paid for), None when the queue is unstable."""
    price = (parse_instance(price_per_hour).price_per_hour if isinstance(price_per_hour, (Instance, str))
             else _positive_price(price_per_hour, "cost_at_rate"))
    sim = simulate(curve, rate, max_batch, max_wait_s, n_requests, seed)
    dollars = cost_per_million(price, sim["rate_per_s"]) if sim["stable"] else None
    return {**sim, "price_per_hour": price, "dollars_per_million": dollars}
