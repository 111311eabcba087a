"""`bertg4 serve` and `bertg4 loadtest`: the protocol, the simulator, and a live server.

The live tests start Ray and one replica of the embedded model (SST head, seq 32) on
127.0.0.1 inside a module fixture and always shut both down.
"""
import asyncio
import json
import platform
import socket

import numpy as np
import pytest

from bertg4 import cost
from bertg4.serve import protocol as P
from bertg4.serve import simulate as S
from bertg4.tasks import get_task


def body(**inputs):
    return json.dumps({"inputs": [{"name": k, "datatype": "BYTES", "shape": [len(v)], "data": v}
                                  for k, v in inputs.items()]}).encode()


# --- protocol (no server) -------------------------------------------------------------------

LIMITS = P.Limits(max_texts=4, max_chars=50, max_body_bytes=2000)


@pytest.mark.parametrize("raw, status, words", [
    (b"{not json", 400, "not valid JSON"),
    (b'{"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["caf\xe9"]}]}', 400, "UTF-8"),
    (b"[1, 2]", 400, "JSON object"),
    (b'{"inputs": []}', 400, "no 'inputs'"),
    (json.dumps({"inputs": [{"name": "text", "datatype": "FP32", "shape": [1], "data": [1.0]}]}).encode(),
     400, "datatype 'FP32'"),
    (json.dumps({"inputs": [{"name": "sentence", "datatype": "BYTES", "shape": [1], "data": ["x"]}]}).encode(),
     400, "unknown input 'sentence'"),
    (body(text=["fine", "  "]), 400, "element 1 is an empty text"),
    (body(text=["x" * 51]), 413, "51 characters"),
    (body(text=["a"] * 5), 413, "5 texts"),
    (b" " * 2001, 413, "2001 bytes"),
    (json.dumps({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [2], "data": ["a"]}]}).encode(),
     400, "shape [2] but 1 data"),
    (json.dumps({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": [3]}]}).encode(),
     400, "element 0 is int"),
    (json.dumps({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["a"]}],
                 "outputs": [{"name": "logits"}]}).encode(), 400, "unknown output 'logits'"),
])
def test_bad_requests_name_the_problem(raw, status, words):
    with pytest.raises(P.ProtocolError) as e:
        P.parse_infer(raw, get_task("SST"), LIMITS)
    assert e.value.status == status and words in e.value.message, e.value.message
    assert e.value.body() == {"error": e.value.message}


def test_inputs_per_task():
    rows, info = P.parse_infer(body(text=["a", "b"]), get_task("SST"), LIMITS)
    assert rows == ["a", "b"] and info == {"id": None, "outputs": None}
    rows, _ = P.parse_infer(body(text_a=["a", "b"], text_b=["c", "d"]), get_task("MRPC"), LIMITS)
    assert rows == [("a", "c"), ("b", "d")]
    rows, _ = P.parse_infer(body(question=["who?"], context=["me."]), get_task("QA"), LIMITS)
    assert rows == [("who?", "me.")]
    with pytest.raises(P.ProtocolError, match="missing input 'text_b'"):
        P.parse_infer(body(text_a=["a"]), get_task("MRPC"), LIMITS)
    with pytest.raises(P.ProtocolError, match="same number of rows"):
        P.parse_infer(body(question=["a", "b"], context=["c"]), get_task("QA"), LIMITS)
    with pytest.raises(P.ProtocolError, match="413|larger") as e:
        P.check_body_size("5000", LIMITS)
    assert e.value.status == 413


def test_output_tensors_follow_the_protocol():
    result = {"label": np.array([1, 0]), "probabilities": np.array([[0.2, 0.8], [0.9, 0.1]], dtype=np.float32),
              "truncated": np.array([False, True])}
    out = P.response("bert", get_task("SST"), result, {"id": "r1", "outputs": ["probabilities"]})
    assert out["id"] == "r1" and out["model_name"] == "bert"
    (t,) = out["outputs"]
    assert t == {"name": "probabilities", "datatype": "FP32", "shape": [2, 2],
                 "data": pytest.approx([0.2, 0.8, 0.9, 0.1])}
    qa = P.outputs(get_task("QA"), {"answer": ["x"], "score": np.array([-np.inf], dtype=np.float32)})
    assert qa[0] == {"name": "answer", "datatype": "BYTES", "shape": [1], "data": ["x"]}
    assert qa[1]["data"] == [None]  # JSON has no -inf: an unanswerable question scores null


# --- simulator (no server) ------------------------------------------------------------------

CURVE = {1: 0.020, 2: 0.030, 4: 0.050, 8: 0.090}


@pytest.mark.parametrize("rate, wait", [(20.0, 0.0), (40.0, 0.01), (70.0, 0.005)])
def test_arrival_timer_is_the_cost_model(rate, wait):
    lat, _ = S.batch_latencies(CURVE, rate, 8, wait, n_requests=5000, seed=3, timer="arrival")
    ref = cost.simulate(CURVE, rate, 8, wait, n_requests=5000, seed=3)
    kept = lat[int(0.05 * len(lat)):]
    assert np.percentile(kept, 99) == pytest.approx(ref["latency_s_p99"], rel=1e-9)
    assert np.percentile(kept, 50) == pytest.approx(ref["latency_s_p50"], rel=1e-9)


def test_idle_timer_and_overhead():
    # the idle timer waits after a busy period too: never faster than the arrival timer
    a = S.simulate(CURVE, 50.0, 8, 0.01, n_requests=5000, timer="arrival")
    i = S.simulate(CURVE, 50.0, 8, 0.01, n_requests=5000, timer="idle")
    assert i["latency_s_p50"] >= a["latency_s_p50"]
    # a constant overhead shifts every percentile by itself
    o = S.simulate(CURVE, 50.0, 8, 0.01, overhead_s=[0.025], n_requests=5000, timer="idle")
    assert o["latency_s_p99"] == pytest.approx(i["latency_s_p99"] + 0.025)
    # with no wait and light load nearly every request is served alone
    lat, sizes = S.batch_latencies(CURVE, 1.0, 8, 0.0, n_requests=2000)
    assert np.median(lat) == pytest.approx(0.020) and sizes.mean() < 1.05
    with pytest.raises(ValueError, match="timer"):
        S.simulate(CURVE, 5.0, 8, timer="later")


@pytest.mark.parametrize("timer", ["idle", "arrival"])
def test_a_budget_of_one_token_per_request_is_a_count_of_requests(timer):
    full = cost.service_times(CURVE, 8)
    lat, sizes = S.batch_latencies(CURVE, 60.0, 8, 0.01, n_requests=4000, seed=5, timer=timer)
    tl, ts = S.batch_latencies(None, 60.0, 8, 0.01, n_requests=4000, seed=5, timer=timer, tokens=[1],
                               service=lambda t: float(full[t]))
    assert (ts == sizes).all() and np.allclose(tl, lat)


def test_a_token_budget_bounds_every_batch():
    tokens = [10, 30, 50]
    lat, sizes = S.batch_latencies(None, 80.0, 64, 0.02, n_requests=3000, seed=1, tokens=tokens,
                                   service=lambda t: 0.002 + 0.0004 * t)
    assert sizes.max() <= 6 and sizes.min() >= 1 and sizes.sum() == 3000
    # a batch never holds more tokens than the budget: replay the draw of token counts
    drawn = np.random.default_rng(1 + 2).choice(np.asarray(tokens), size=3000, replace=True)
    edges = np.cumsum(np.concatenate([[0], sizes]))
    assert max(drawn[a:b].sum() for a, b in zip(edges[:-1], edges[1:])) <= 64
    sim = S.simulate(None, 20.0, 64, 0.02, tokens=tokens, service=lambda t: 0.002 + 0.0004 * t, n_requests=3000)
    # capacity: batches packed in order, closed at the first request that does not fit
    full = 64 / 30 / (0.002 + 0.0004 * 64)  # as if every batch carried exactly 64 tokens
    assert sim["stable"] and 0.6 * full < sim["capacity_per_s"] < full
    assert S.token_capacity(lambda t: 0.01, 64, [32]) == pytest.approx(2 / 0.01)  # two per batch
    with pytest.raises(ValueError, match="token counts must lie in 1..64"):
        S.batch_latencies(None, 5.0, 64, tokens=[65], service=lambda t: 0.01)
    a, b = S.token_service([(10, 0.006), (20, 0.010), (40, 0.018)])
    assert a == pytest.approx(0.002) and b == pytest.approx(0.0004)
    assert S.token_service([(16, 0.01), (16, 0.012)]) == (pytest.approx(0.011), 0.0)


def test_a_token_budget_below_the_sequence_length_is_refused(capsys):
    from bertg4.serve.command import main
    assert main(["serve", "--seq-length", "64", "--max-batch-tokens", "32"]) == 2
    assert "(--max-batch-tokens) 32 is below the sequence length (--seq-length) 64" in capsys.readouterr().err
    assert main(["serve", "--seq-length", "64", "--max-batch-tokens", "64", "--padding", "fixed"]) == 2
    assert "padding fixed pads every row" in capsys.readouterr().err
    from bertg4.serve.app import check_token_budget  # what the replica runs too, with its own padding
    check_token_budget(None, 64, "fixed")  # no budget: nothing to check
    check_token_budget(64, 64, "packed")
    check_token_budget(8, None, None)  # sequence length not known yet (an export): checked by the replica
    with pytest.raises(ValueError, match="counts real tokens"):
        check_token_budget(256, 64, "fixed")


def test_weigh_counts_texts_or_tokens(reference):
    from bertg4.serve.app import batch_cost, weigh
    rows = weigh(reference, ["a fine film", "bad"], by_tokens=False)
    assert rows == ["a fine film", "bad"] and rows.cost == 2 and rows.tokens == 0
    tok = weigh(reference, ["a fine film", "bad"], by_tokens=True)
    want = int(reference.featurize(["a fine film", "bad"]).valid_length.sum())  # [CLS] ... [SEP] each
    assert tok.cost == tok.tokens == want == 8
    assert batch_cost([rows, tok]) == 2 + 8 and batch_cost([["x", "y", "z"]]) == 3


def test_a_batch_weighed_by_tokens_tokenizes_each_text_once(reference, monkeypatch):
    from bertg4.serve.app import answer, run_batch, weigh
    requests = [["a fine film", "bad"], ["the plot is thin but the cast is great"]]
    want = answer(reference, [t for r in requests for t in r])
    items = [weigh(reference, r, by_tokens=True) for r in requests]
    calls = []
    featurize = reference.featurize
    monkeypatch.setattr(reference, "featurize", lambda *a, **k: calls.append(a) or featurize(*a, **k))
    parts = run_batch(reference, items, None)
    assert calls == []  # the features weigh made are the batch's
    assert [p[1]["batch_tokens"] for p in parts] == [sum(i.tokens for i in items)] * 2
    got = {k: np.concatenate([p[0][k] for p in parts]) for k in want}
    np.testing.assert_array_equal(got["label"], want["label"])
    np.testing.assert_allclose(got["probabilities"], want["probabilities"], atol=1e-6)
    plain = run_batch(reference, [weigh(reference, r, by_tokens=False) for r in requests], None)
    assert len(calls) == 1 and [p[0]["label"].tolist() for p in plain] == [p[0]["label"].tolist() for p in parts]
    # the time since the previous batch counts as the replica's work between batches only when
    # one of this batch's requests was already waiting at its end
    assert parts[0][1]["gap_s"] is None  # no previous batch
    items[0].arrived, items[1].arrived = 5.0, 9.0
    assert run_batch(reference, items, None, last_end=4.0, full=True)[0][1]["gap_s"] is None  # arrived after it
    assert run_batch(reference, items, None, last_end=6.0)[0][1]["gap_s"] is None  # not full: the batcher waited
    (_, stats), _ = run_batch(reference, items, None, last_end=6.0, full=True)
    assert stats["gap_s"] == pytest.approx(stats["start"] - 6.0) and stats["end"] > stats["start"]
    assert run_batch(reference, [], None) == []


def _closed_run(sent_at, outcome="ok"):
    results = [{"outcome": outcome, "latency_s": 0.02, "status": 200 if outcome == "ok" else 503,
                "sent_at": t, "batch": str(k // 4), "batch-size": "4", "service-ms": "25.0", "replica-ms": "30.0"}
               for k, t in enumerate(sent_at)]
    if outcome != "ok":
        for r in results:
            r["error"] = '{"error": "busy"}'
    return {"results": results, "span_s": sent_at[-1] + 0.05, "schedule_s": sent_at[-1] + 0.05,
            "rate_per_s": len(sent_at) / (sent_at[-1] + 0.05), "concurrency": 8, "warmup_s": 0.0}


def test_capacity_is_what_a_closed_loop_answers_after_its_warm_up(monkeypatch):
    from bertg4.serve import loadtest as L
    monkeypatch.setattr(L, "server_info", lambda url, name: {"max_batch_size": 4, "batch_wait_ms": 5.0,
                                                             "inputs": ["text"]})
    monkeypatch.setattr(L, "_server_gc", lambda *a: None)
    seen = {}
    # 50/s in the warm-up's first second, then 100/s: the capacity is the steady part's
    sent = [k / 50 for k in range(50)] + [1.0 + k / 100 for k in range(301)]

    def closed(url, bodies, concurrency, **kw):
        seen.update(concurrency=concurrency, **kw)
        return _closed_run(sent)
    monkeypatch.setattr(L, "closed", closed)
    cap = L.measure_capacity("http://127.0.0.1:1", "bert", ["x"], n_requests=400, duration_s=5.0, warmup_s=1.0)
    assert seen["concurrency"] == 8 and seen["n_requests"] == 400 and seen["duration_s"] == 5.0  # twice the batch
    assert cap["capacity_per_s"] == pytest.approx(100.0) and cap["rate_per_s"] == cap["capacity_per_s"]
    assert cap["kind"] == "capacity" and cap["concurrency"] == 8 and "closed loop of 8" in cap["capacity_source"]
    assert cap["capacity_service_per_s"] == pytest.approx(4 / 0.025)  # the batches alone: 4 per 25 ms
    assert cap["p50_ms_simulated"] is None and cap["p99_ms_simulated"] is None  # not Poisson: not simulated
    assert "closed loop of 3" in L.measure_capacity("http://127.0.0.1:1", "bert", ["x"], concurrency=3)["capacity_source"]
    assert seen["concurrency"] == 3
    # two replicas: twice the batch for each, so that each still has a full batch waiting
    monkeypatch.setattr(L, "server_info", lambda url, name: {"max_batch_size": 4, "batch_wait_ms": 5.0,
                                                             "inputs": ["text"], "num_replicas": 2})
    L.measure_capacity("http://127.0.0.1:1", "bert", ["x"], n_requests=400, duration_s=5.0, warmup_s=1.0)
    assert seen["concurrency"] == 16
    monkeypatch.setattr(L, "closed", lambda *a, **k: _closed_run(sent, "rejected"))
    with pytest.raises(RuntimeError, match="351 of 351 requests not answered.*rejected 351"):
        L.measure_capacity("http://127.0.0.1:1", "bert", ["x"])
    monkeypatch.setattr(L, "closed", lambda *a, **k: _closed_run([0.1, 0.2, 0.3]))
    with pytest.raises(RuntimeError, match="sent 0 requests after its 1.0 s warm-up"):
        L.measure_capacity("http://127.0.0.1:1", "bert", ["x"])
    with pytest.raises(ValueError, match="warm-up of 6 s"):
        L.measure_capacity("http://127.0.0.1:1", "bert", ["x"], duration_s=5.0, warmup_s=6)


def test_percentile_interval_keeps_a_stall_together():
    from bertg4.serve.loadtest import percentile_interval
    rng = np.random.default_rng(0)
    sent = np.sort(rng.uniform(0, 20, 2000))
    lat = rng.uniform(10, 20, 2000)
    lo, hi = percentile_interval(sent, lat, 50)
    assert lo < np.percentile(lat, 50) < hi and hi - lo < 1.0  # 2000 calm requests: a narrow interval
    stalled = lat.copy()
    stalled[(sent > 5) & (sent < 5.3)] = 100.0  # one stall delays every request of 0.3 s
    lo, hi = percentile_interval(sent, stalled, 99)
    assert lo < 30 and hi >= 100  # the run's p99 hangs on that one moment: with or without it
    single = percentile_interval(sent, stalled, 99, block_s=1e-6)  # blocks of one request each
    assert single[0] > lo  # drawn request by request, the stall's requests never all drop out
    assert percentile_interval([1.0, 1.1], [5.0, 6.0], 50) is None  # one block: no interval
    assert percentile_interval([1.0], [5.0], 50) is None


def test_the_figure_shows_the_measured_intervals_and_leaves_the_closed_loop_out():
    import matplotlib
    matplotlib.use("Agg")
    from bertg4.serve.loadtest import plot
    recs = [{"kind": "capacity", "rate_per_s": 150.0, "latency_ms_p50": 50.0, "latency_ms_p99": 80.0},
            {"kind": "loadtest", "rate_per_s": 30.0, "latency_ms_p50": 20.0, "latency_ms_p99": 50.0,
             "latency_ms_p50_ci90": [19.0, 22.0], "latency_ms_p99_ci90": [45.0, 60.0],
             "p50_ms_simulated": 21.0, "p99_ms_simulated": 48.0},
            {"kind": "find_max", "rate_per_s": 90.0, "latency_ms_p50": 30.0, "latency_ms_p99": 70.0,
             "p50_ms_simulated": 33.0, "p99_ms_simulated": 66.0},  # no interval: a bar of no length
            {"kind": "loadtest", "rate_per_s": 60.0, "latency_ms_p50": 25.0, "latency_ms_p99": 55.0,
             "latency_ms_p50_ci90": [25.5, 27.0], "latency_ms_p99_ci90": [40.0, 52.0]}]  # interval beside the value
    fig = plot(recs)
    ax = fig.axes[0]
    bars = [c for c in ax.containers if type(c).__name__ == "ErrorbarContainer"]
    assert len(bars) == 2  # p50 and p99 measured
    p99 = next(c for c in bars if "p99" in c.get_label())
    line, _caps, (segs,) = p99.lines
    assert list(line.get_xdata()) == [30.0, 60.0, 90.0]  # the closed loop's 150/s is not an offered rate
    ends = [sorted(seg[:, 1].tolist()) for seg in segs.get_segments()]
    assert ends[0] == [45.0, 60.0] and ends[1] == [40.0, 55.0] and ends[2] == [70.0, 70.0]
    for l in ax.lines:
        assert 150.0 not in list(l.get_xdata())
    import matplotlib.pyplot as plt
    plt.close(fig)


@pytest.mark.parametrize("timer, tokens, p50, p99, batches", [
    ("idle", None, 0.03218751480833326, 0.07753470890585033, 1067),
    ("arrival", None, 0.028668945591004302, 0.07868349832189786, 1250),
    ("idle", [10, 30, 50, 64], 0.046610117937078144, 0.16733352645702707, 2423),
    ("arrival", [10, 30, 50, 64], 0.038734655412199004, 0.1660809582168926, 2505),
])
def test_the_simulated_queue_gives_the_latencies_it_gave_before_it_had_a_bound(timer, tokens, p50, p99, batches):
    """Pinned values of the simulator as it was before requests were admitted to a queue (commit
    d018aa8): without a bound the queue of admitted requests must not change a single latency."""
    curve = {1: 0.010, 2: 0.015, 3: 0.019, 4: 0.022}
    if tokens is None:
        lat, sizes = S.batch_latencies(curve, 120.0, 4, 0.004, 3000, 11, timer, gap_s=0.002, spread=[0.7, 1.0, 1.3])
    else:
        lat, sizes = S.batch_latencies(None, 40.0, 64, 0.01, 3000, 11, timer, tokens=tokens,
                                       service=lambda t: 0.002 + 0.0004 * t, gap_s=0.001)
    assert np.percentile(lat, 50) == p50 and np.percentile(lat, 99) == p99
    assert len(sizes) == batches and sizes.sum() == 3000


@pytest.mark.parametrize("timer", ["idle", "arrival"])
def test_a_bounded_server_counts_exactly_the_requests_it_holds(timer):
    """Brute force: a request is turned away exactly when, at its arrival, the server holds
    ``limit`` requests let in before it and not yet answered -- also when a batch ends
    before the batcher's wait would have (a short batch, a long wait)."""
    curve = {1: 0.002, 2: 0.003, 3: 0.004, 4: 0.005}
    a = cost._arrivals(3000, 300.0, 4)
    lat, sizes = S.batch_latencies(curve, 300.0, 4, 0.05, n_requests=3000, seed=4, timer=timer, limit=6)
    done = a + lat  # NaN for those turned away
    away = np.isnan(lat)
    assert 0.05 < away.mean() < 0.95 and sizes.sum() == (~away).sum()
    for k in range(len(a)):
        held = np.sum(~away[:k] & (done[:k] > a[k]))
        assert (held >= 6) == away[k], (k, held)


def test_a_bounded_server_turns_requests_away_instead_of_queueing_them():
    curve = {1: 0.010, 2: 0.015, 3: 0.020, 4: 0.025}  # 160/s with full batches
    free, _ = S.batch_latencies(curve, 120.0, 4, 0.002, n_requests=4000, seed=3)
    roomy, _ = S.batch_latencies(curve, 120.0, 4, 0.002, n_requests=4000, seed=3, limit=4000)
    np.testing.assert_array_equal(free, roomy)  # a bound never reached changes nothing
    lat, sizes = S.batch_latencies(curve, 400.0, 4, 0.002, n_requests=4000, seed=3, limit=12)
    away = np.isnan(lat)
    assert 0.4 < away.mean() < 0.8 and sizes.sum() == (~away).sum()  # 2.5 x capacity: most turned away
    # nobody let in waits behind more than the bound: the two batches ahead and its own at most
    assert np.nanmax(lat) <= 3 * 0.025 + 0.002 + 1e-9
    over = S.simulate(curve, 400.0, 4, 0.002, n_requests=4000, limit=12)
    assert not over["stable"] and over["limit"] == 12 and 0.4 < over["rejected_fraction"] < 0.8
    assert over["latency_s_p99"] <= 3 * 0.025 + 0.002 + 1e-9  # percentiles of those let in, bounded
    assert S.simulate(curve, 50.0, 4, 0.002, n_requests=2000, limit=32)["rejected_fraction"] == 0.0
    with pytest.raises(ValueError, match="limit"):
        S.batch_latencies(curve, 50.0, 4, limit=0)
    from bertg4.serve.loadtest import queue_limit
    assert queue_limit({"max_ongoing_requests": 16, "max_queued_requests": 16}) == 32
    assert queue_limit({"max_ongoing_requests": 16, "max_queued_requests": -1}) is None  # unbounded
    assert queue_limit({}) is None  # a server that does not say
    from bertg4.serve.app import _queue_bounds

    class Config:
        max_ongoing_requests, max_queued_requests, num_replicas, autoscaling_config = 8, -1, 3, None
    assert _queue_bounds(Config()) == {"max_ongoing_requests": 8, "max_queued_requests": -1, "num_replicas": 3}

    class Autoscaled(Config):
        autoscaling_config = {"min_replicas": 1, "max_replicas": 4}
    assert _queue_bounds(Autoscaled())["num_replicas"] is None  # how many serve changes with the load
    assert _queue_bounds(None) == {"max_ongoing_requests": None, "max_queued_requests": None, "num_replicas": None}


def test_several_replicas_share_the_arrivals_by_least_connections():
    """Two replicas of one 10 ms request each at 150/s (75 % of their 200/s): sent to the one
    holding fewer requests, the mean wait lies near one queue of two servers (M/D/2, about 6 ms
    by Erlang C halved) and well below two replicas fed half each at random (M/D/1 at 75/s: 15 ms
    of wait, Pollaczek-Khinchine); one replica of the same speed could not keep up at all."""
    curve = {1: 0.010}
    two, _ = S.batch_latencies(curve, 150.0, 1, 0.0, n_requests=20_000, seed=0, replicas=2)
    half, _ = S.batch_latencies(curve, 75.0, 1, 0.0, n_requests=20_000, seed=0)
    assert 0.0150 < two[1000:].mean() < 0.0190 and half[1000:].mean() == pytest.approx(0.025, rel=0.05)
    assert S.simulate(curve, 150.0, 1, replicas=2)["stable"] and not S.simulate(curve, 150.0, 1)["stable"]
    assert S.capacity(curve, 1, replicas=3) == pytest.approx(300.0)
    assert S.token_capacity(lambda t: 0.01, 1, [1], replicas=2) == pytest.approx(200.0)
    # at 3x their capacity with at most 3 requests each, two thirds are turned away, and no one
    # admitted waits behind more than the two ahead of it on its replica
    lat, _ = S.batch_latencies(curve, 600.0, 1, 0.0, n_requests=20_000, seed=1, replicas=2, limit=3)
    assert np.isnan(lat[1000:]).mean() == pytest.approx(2 / 3, abs=0.01) and np.nanmax(lat) <= 0.030 + 1e-9
    # a lone request at a time goes to a free replica: no batch but its own, no wait
    lat, sizes = S.batch_latencies(curve, 2.0, 1, 0.0, n_requests=200, seed=1, replicas=3)
    assert set(sizes.tolist()) == {1} and lat.max() == pytest.approx(0.010)
    for bad in (0, 1.5, True, None):
        with pytest.raises(ValueError, match="replicas"):
            S.batch_latencies(curve, 5.0, 1, replicas=bad)


def test_the_replicas_work_between_batches_keeps_the_simulated_server_busy():
    curve = {1: 0.010, 2: 0.015, 3: 0.020, 4: 0.025}
    assert S.capacity(curve, 4, gap_s=0.005) == pytest.approx(4 / 0.030) and S.capacity(curve, 4) == 4 / 0.025
    base, _ = S.batch_latencies(curve, 120.0, 4, 0.002, n_requests=4000, seed=3)
    same, _ = S.batch_latencies(curve, 120.0, 4, 0.002, n_requests=4000, seed=3, gap_s=0.0)
    np.testing.assert_array_equal(base, same)
    busy, _ = S.batch_latencies(curve, 120.0, 4, 0.002, n_requests=4000, seed=3, gap_s=0.005)
    assert np.percentile(busy, 99) > 1.2 * np.percentile(base, 99)  # near capacity the gap queues requests
    idle = [S.batch_latencies(curve, 0.5, 4, 0.002, n_requests=2000, seed=3, gap_s=g)[0] for g in (0.0, 0.005)]
    assert np.median(idle[1]) == pytest.approx(np.median(idle[0]), abs=1e-9)  # the gap falls in idle time
    assert np.max(idle[1] - idle[0]) <= 0.005 + 1e-9
    # 140/s lies between the capacity with the gap (133/s) and without it (160/s)
    assert S.simulate(curve, 140.0, 4, 0.002, n_requests=2000)["stable"]
    assert not S.simulate(curve, 140.0, 4, 0.002, n_requests=2000, gap_s=0.005)["stable"]
    assert S.token_capacity(lambda t: 0.01, 64, [32], gap_s=0.01) == pytest.approx(2 / 0.02)
    with pytest.raises(ValueError, match="gap_s"):
        S.capacity(curve, 4, gap_s=-0.001)


def test_the_measured_spread_of_service_times_widens_the_simulated_tail():
    curve = {1: 0.010, 2: 0.015, 3: 0.020, 4: 0.025}
    base, sizes = S.batch_latencies(curve, 120.0, 4, 0.002, n_requests=4000, seed=3)
    ones, ones_sizes = S.batch_latencies(curve, 120.0, 4, 0.002, n_requests=4000, seed=3, spread=[1.0, 1.0])
    np.testing.assert_array_equal(base, ones)  # factors of 1: the mean curve exactly
    np.testing.assert_array_equal(sizes, ones_sizes)
    wide, _ = S.batch_latencies(curve, 120.0, 4, 0.002, n_requests=4000, seed=3, spread=[0.6, 1.4])
    assert np.percentile(wide, 99) > 1.1 * np.percentile(base, 99)  # same mean, wider service: longer tail
    low = [S.batch_latencies(curve, 0.5, 4, 0.0, n_requests=2000, seed=3, spread=f)[0] for f in ([1.0], [0.6, 1.4])]
    alone = np.isin(np.round(low[1] / low[0], 6), [0.6, 1.4])  # alone in the server, a request takes its factor
    assert alone.mean() > 0.98
    f = S.service_spread([(1, 0.012), (2, 0.015), (4, 0.020)], lambda k: curve[k])
    np.testing.assert_allclose(f, [1.2, 1.0, 0.8])
    with pytest.raises(ValueError, match="no batch service times"):
        S.service_spread([(1, 0.0), (2, 0.01)], lambda k: {1: 0.01, 2: float("inf")}[k])
    for bad in ([], [0.0, 1.0], [float("nan")], [[1.0]]):
        with pytest.raises(ValueError, match="spread must be positive"):
            S.batch_latencies(curve, 10.0, 4, spread=bad, n_requests=100)


def _answer(batch, size, service_ms, latency_s=0.05, replica="r"):
    return {"outcome": "ok", "latency_s": latency_s, "sent_at": 1.0, "batch": str(batch), "batch-size": str(size),
            "service-ms": f"{service_ms:.3f}", "replica-ms": f"{1e3 * latency_s - 5:.3f}", "replica": replica}


def test_a_load_record_tells_batches_apart_by_their_number():
    from bertg4.serve import loadtest as L
    # three batches: two share their service time and size, one of them answered twice (size 2)
    res = [_answer(1, 1, 10.0), _answer(2, 2, 15.0), _answer(2, 2, 15.0), _answer(3, 1, 10.0)]
    run = {"results": res, "rate_per_s": 20.0, "span_s": 1.0, "schedule_s": 1.0}
    server = {"max_batch_size": 2, "batch_wait_ms": 0.0}
    rec = L.load_record(run, server, n_sim=500)
    assert rec["service_spread_batches"] == 3 and rec["service_spread_mean_raw"] == pytest.approx(1.0)
    # no clock from this server: the headline is the mean curve with all of the overhead, as before
    assert rec["simulated_service"] == "mean curve" and rec["simulated_overhead"] == "all of it"
    assert rec["p99_ms_simulated"] == rec["p99_ms_simulated_mean_curve"] == rec["p99_ms_simulated_raw_overhead"]
    # without batch numbers (an older server) equal service times and sizes look like one batch
    old = L.load_record({**run, "results": [{k: v for k, v in r.items() if k != "batch"} for r in res]}, server,
                        n_sim=500)
    assert old["service_spread_batches"] == 2


def test_answers_of_several_replicas_are_simulated_as_the_replicas_the_server_runs():
    """A record simulates as many replicas as the server's metadata says it runs
    (``num_replicas``); where several answered and it does not say (autoscaling, an older
    server), the record says so instead of simulating them as one queue. A replica replaced in
    the middle of a run answers under a new name: one replica, not two. No offline share or
    queueing bound is taken from one replica's offline curve for several."""
    from bertg4.serve import command
    from bertg4.serve import loadtest as L
    res = [{**_answer(k, 1, 10.0), "replica": "ab"[k % 2]} for k in range(1, 7)]
    run = {"results": res, "rate_per_s": 20.0, "span_s": 1.0, "schedule_s": 1.0}
    server = {"max_batch_size": 2, "batch_wait_ms": 0.0}
    rec = L.load_record(run, server, n_sim=500)
    assert rec["replicas_seen"] == 2 and rec["p50_ms_simulated"] is None and rec["p99_ms_simulated"] is None
    assert rec["capacity_service_per_s"] is None and "2 replicas answered" in rec["simulated_note"]
    assert rec["simulated_replicas"] is None and rec["service_ms_curve"]["1"] == pytest.approx(10.0)  # measured
    one = L.load_record({**run, "results": [{**r, "replica": "a"} for r in res]}, server, n_sim=500)
    assert one["replicas_seen"] == 1 and one["p50_ms_simulated"] > 0 and "simulated_note" not in one
    assert one["simulated_replicas"] == 1
    haproxy = {"ingress": "haproxy", "haproxy_balance": "leastconn"}  # the dispatch simulated
    two = L.load_record(run, {**server, "num_replicas": 2, **haproxy}, n_sim=500)
    assert two["simulated_replicas"] == 2 and two["num_replicas"] == 2 and "simulated_note" not in two
    assert two["capacity_per_s"] == pytest.approx(2 * one["capacity_per_s"]) and two["ingress"] == "haproxy"
    # behind Serve's own proxy, or HAProxy balancing otherwise, the record says what differs
    proxied = L.load_record(run, {**server, "num_replicas": 2, "ingress": "proxy"}, n_sim=500)
    assert proxied["p99_ms_simulated"] == two["p99_ms_simulated"] and "ingress is proxy" in proxied["simulated_note"]
    rr = L.load_record(run, {**server, "num_replicas": 2, **haproxy, "haproxy_balance": "roundrobin"}, n_sim=500)
    assert "ingress is haproxy (balance roundrobin)" in rr["simulated_note"]
    replaced = L.load_record(run, {**server, "num_replicas": 1}, n_sim=500)
    assert replaced["replicas_seen"] == 2 and replaced["simulated_replicas"] == 1
    assert "2 replicas answered, the deployment runs 1" in replaced["simulated_note"]
    assert replaced["p99_ms_simulated"] == one["p99_ms_simulated"]
    assert L.serving_replicas([one, replaced]) == 1 and L.serving_replicas([one, two]) == 2
    assert L.serving_replicas([rec]) == 2 and L.serving_replicas([]) == 0  # (not simulated: those seen)
    summary = {"offline_service_ms_curve": {"1": 10.0, "2": 15.0}, "offline_per_s_max_batch": 150.0,
               "max_rate_per_s": 100.0}
    command._bound(summary, {"max_batch_size": 2, "batch_wait_ms": 0.0}, 100.0, "idle", [two])
    assert summary["queueing_bound_per_s"] is None
    assert "simulated p50 — p99 —" in L.format_line(rec)  # shown as not simulated


def _clocked(batch, size, sent, arrived, start, end, answered, back, replica="r"):
    return {"outcome": "ok", "latency_s": back - sent, "start": sent, "end": back, "sent_at": sent - 9.9,
            "batch": str(batch), "batch-size": str(size), "service-ms": f"{1e3 * (end - start):.3f}",
            "replica-ms": f"{1e3 * (answered - arrived):.3f}", "replica": replica,
            "clock": f"{arrived:.6f} {start:.6f} {end:.6f} {answered:.6f}"}


def test_the_simulator_leaves_out_the_batch_a_request_waited_for_on_its_way_in():
    """A request that reaches the replica while it computes is read only when the batch ends;
    that wait is outside the handler but the simulated queue has it too, so it is taken out of
    the overhead the simulator adds -- only where the server's clock is the load generator's."""
    from bertg4.serve import loadtest as L
    res = [_clocked(1, 1, 9.990, 9.992, 10.000, 10.020, 10.021, 10.023),  # in before batch 1: not blocked
           _clocked(2, 2, 10.005, 10.022, 10.030, 10.050, 10.051, 10.053),  # sent during batch 1: 15 ms of it
           _clocked(2, 2, 10.025, 10.027, 10.030, 10.050, 10.051, 10.054),  # sent between batches
           _clocked(1, 1, 10.005, 10.007, 10.008, 10.018, 10.019, 10.020, replica="q")]  # another replica
    assert L.shared_clock(res)
    np.testing.assert_allclose(L.blocked_on_the_way_in(res, res), [0.0, 0.015, 0.0, 0.0], atol=1e-9)
    # a batch only partly inside the way in counts for that part; batches of no answer count for nothing
    early = dict(res[1], start=10.010)
    np.testing.assert_allclose(L.blocked_on_the_way_in([early], res), [0.010], atol=1e-9)
    np.testing.assert_allclose(L.blocked_on_the_way_in([res[1]], [res[0]]), [0.015], atol=1e-9)
    np.testing.assert_allclose(L.blocked_on_the_way_in([res[1]], res[2:]), [0.0], atol=1e-9)
    # answers without a replica header count as one replica's, their spans merged where they
    # overlap (not counted twice); an answer whose clock cannot be read is left out
    anon = [{k: v for k, v in r.items() if k != "replica"} for r in res]
    wide = dict(anon[3], clock="10.004000 10.005000 10.018000 10.019000")
    np.testing.assert_allclose(L.blocked_on_the_way_in([anon[1]], anon[:3] + [wide, dict(anon[0], clock="x"),
                                                                dict(anon[0], clock=None)]),
                               [0.015], atol=1e-9)  # 10.005-10.020 of the merged 10.000-10.020 (0.028 counted twice)
    # the record of one replica's answers (the simulator models one replica)
    run = {"results": res[:3], "rate_per_s": 20.0, "span_s": 1.0, "schedule_s": 1.0}
    server = {"max_batch_size": 2, "batch_wait_ms": 0.0}
    rec = L.load_record(run, server, n_sim=2000)
    assert rec["clock_shared"] is True
    assert rec["overhead_blocked_ms_mean"] == pytest.approx(15.0 / 3, abs=1e-3)
    assert rec["overhead_ms_p99"] > 17.0 and rec["overhead_simulated_ms_p99"] < 5.0
    assert rec["simulated_overhead"] == "less the batches waited for on the way in"
    assert rec["p50_ms_simulated_mean_curve"] < rec["p50_ms_simulated_raw_overhead"]
    assert rec["p99_ms_simulated_mean_curve"] < rec["p99_ms_simulated_raw_overhead"]
    # a server elsewhere: its clock counts from another boot, the order breaks, every sample is kept
    def shifted(r, by):
        return dict(r, clock=" ".join(f"{float(x) + by:.6f}" for x in r["clock"].split()))
    for by in (100.0, -100.0):
        assert not L.shared_clock([shifted(r, by) for r in res])
        far = L.load_record({**run, "results": [shifted(r, by) for r in res[:3]]}, server, n_sim=2000)
        assert far["clock_shared"] is False and far["overhead_blocked_ms_mean"] is None
        assert far["simulated_overhead"] == "all of it" and far["simulated_service"] == "mean curve"
        assert far["p99_ms_simulated"] == far["p99_ms_simulated_raw_overhead"]
        assert far["p50_ms_simulated_mean_curve"] == far["p50_ms_simulated_raw_overhead"] \
            == rec["p50_ms_simulated_raw_overhead"]
    assert rec["simulated_service"] == "measured spread"  # the headline, with the blocked waits out
    assert not L.shared_clock([{k: v for k, v in r.items() if k != "clock"} for r in res])  # an older server
    assert not L.shared_clock([dict(r, clock="1 2 3") for r in res])  # not four times


def test_curve_from_batches():
    c = S.curve_from_batches([(1, 0.02), (1, 0.022), (3, 0.04), (4, 0.05)], 6)
    assert list(c) == [1, 2, 3, 4, 5, 6]
    assert c[1] == pytest.approx(0.021) and c[3] == pytest.approx(0.04)
    assert c[4] < c[5] < c[6]  # filled from the least-squares line
    with pytest.raises(ValueError, match="no batch service times"):
        S.curve_from_batches([], 4)


def test_schedule_times_requests_after_the_warm_up():
    from bertg4.serve.loadtest import schedule
    # a fast rate with few requests: all would leave within the warm-up if the warm-up counted
    at = schedule(500.0, 30, duration_s=8.0, warmup_s=0.5, seed=1)
    assert np.all(np.diff(at) > 0) and at[0] == 0.0
    assert (at >= 0.5).sum() == 30 and 150 < (at < 0.5).sum() < 350
    slow = schedule(2.0, 1000, duration_s=5.0, warmup_s=1.0, seed=2)  # the duration bounds it
    assert slow[-1] <= 5.0 and len(slow) < 30
    assert len(schedule(50.0, 7, duration_s=10.0)) == 7  # no warm-up: exactly n_requests
    with pytest.raises(ValueError, match="warm-up of 2.0 s is not shorter"):
        schedule(5.0, 10, duration_s=2.0, warmup_s=2.0)
    with pytest.raises(ValueError, match="rate must be a positive"):
        schedule(0.0, 10, duration_s=2.0)


def test_a_level_meets_a_p99_target_only_with_nothing_rejected_failed_or_lost():
    from bertg4.serve.loadtest import meets_target
    ok = {"latency_ms_p99": 90.0, "rejected": 0, "failed": 0, "lost": 0}
    assert meets_target(ok, 100.0) and not meets_target(ok, 80.0)
    for k in ("rejected", "failed", "lost"):
        assert not meets_target({**ok, k: 1}, 100.0)
    assert not meets_target({**ok, "latency_ms_p99": None}, 100.0)  # nothing timed


def test_serve_config_is_a_valid_serve_config(tmp_path):
    import yaml
    from ray.serve.schema import ServeDeploySchema
    from bertg4.serve import command
    import argparse
    parser = argparse.ArgumentParser()
    command.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["serve", "--min-replicas", "1", "--max-replicas", "4", "--max-batch-size", "16",
                              "--host", "0.0.0.0", "--write-config", str(tmp_path / "c.yaml")])
    assert command.run(args) == 0
    cfg = yaml.safe_load((tmp_path / "c.yaml").read_text())
    ServeDeploySchema.model_validate(cfg)
    dep = cfg["applications"][0]["deployments"][0]
    assert dep["autoscaling_config"]["max_replicas"] == 4 and dep["max_ongoing_requests"] == 64
    assert cfg["applications"][0]["args"]["max_batch_size"] == 16
    assert cfg["applications"][0]["args"]["freeze_gc"] is True  # the default; --no-freeze-gc turns it off
    args = parser.parse_args(["serve", "--no-freeze-gc", "--write-config", str(tmp_path / "g.yaml")])
    assert command.run(args) == 0
    assert yaml.safe_load((tmp_path / "g.yaml").read_text())["applications"][0]["args"]["freeze_gc"] is False
    assert "direct ingress" not in (tmp_path / "c.yaml").read_text().lower()
    # a token budget goes into the args; direct ingress cannot, so the file says what it needs
    args = parser.parse_args(["serve", "--max-batch-tokens", "256", "--direct-ingress",
                              "--write-config", str(tmp_path / "d.yaml")])
    assert command.run(args) == 0
    text = (tmp_path / "d.yaml").read_text()
    ServeDeploySchema.model_validate(yaml.safe_load(text))
    assert yaml.safe_load(text)["applications"][0]["args"]["max_batch_tokens"] == 256
    assert "start every Ray node with RAY_SERVE_THROUGHPUT_OPTIMIZED=1" in text
    # nor can HAProxy in front; with --direct-ingress it is refused before anything is written
    args = parser.parse_args(["serve", "--haproxy", "--write-config", str(tmp_path / "h.yaml")])
    assert command.run(args) == 0
    assert "start every Ray node with RAY_SERVE_ENABLE_HA_PROXY=1 RAY_SERVE_THROUGHPUT_OPTIMIZED=1" in \
        (tmp_path / "h.yaml").read_text()
    args = parser.parse_args(["serve", "--haproxy", "--direct-ingress", "--write-config", str(tmp_path / "x.yaml")])
    with pytest.raises(ValueError, match="--direct-ingress"):
        command.run(args)
    assert not (tmp_path / "x.yaml").exists()
    # the application builder accepts exactly these args
    from bertg4.serve.app import build_app
    with pytest.raises(ValueError, match="unknown application args"):
        build_app({"modle": "embedded"})


def test_local_ray_starts_without_metrics_unless_asked(monkeypatch):
    """Ray's metrics round every 10 s stalls a batch on a small machine, so a local Ray
    instance starts with metrics collection off; --ray-metrics keeps it, and a value the
    user set is theirs. Ray itself is not started: its start is replaced by a probe."""
    import argparse
    import os
    import ray
    from bertg4.serve import command, server as srv

    seen = []

    def probe(num_cpus, attempts=2):
        seen.append(os.environ.get("RAY_enable_metrics_collection"))
        raise RuntimeError("probe: no Ray")
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(srv, "_init_local", probe)
    monkeypatch.delenv("RAY_enable_metrics_collection", raising=False)
    for kw in ({}, {"ray_metrics": True}):
        with pytest.raises(RuntimeError, match="probe"):
            srv.start({"model": "embedded"}, port=free_port(), **kw)
    monkeypatch.setenv("RAY_enable_metrics_collection", "1")
    with pytest.raises(RuntimeError, match="probe"):
        srv.start({"model": "embedded"}, port=free_port())
    assert seen == ["0", None, "1"]
    assert os.environ["RAY_enable_metrics_collection"] == "1"  # only the Ray start saw the change
    # beside direct ingress's settings, each kept as the user set it
    monkeypatch.delenv("RAY_enable_metrics_collection")
    monkeypatch.delenv("RAY_SERVE_THROUGHPUT_OPTIMIZED", raising=False)
    monkeypatch.setattr(srv, "_init_local", lambda num_cpus: seen.append(
        {k: os.environ.get(k) for k in (*srv.DIRECT_INGRESS_ENV, "RAY_enable_metrics_collection")}) or probe(num_cpus))
    with pytest.raises(RuntimeError, match="probe"):
        srv.start({"model": "embedded"}, port=free_port(), direct_ingress=True)
    assert seen[-2] == {**srv.DIRECT_INGRESS_ENV, "RAY_enable_metrics_collection": "0"}
    # the command passes the flag on
    calls = []

    def fake_start(*a, **kw):
        calls.append(kw["ray_metrics"])
        raise KeyboardInterrupt
    monkeypatch.setattr(srv, "start", fake_start)
    parser = argparse.ArgumentParser()
    command.add_parser(parser.add_subparsers(dest="command"))
    for argv in (["serve"], ["serve", "--ray-metrics"]):
        assert command.run(parser.parse_args(argv)) == 0
    assert calls == [False, True]


def test_replicas_a_local_ray_instance_cannot_place_are_refused(monkeypatch):
    """Serve waits without end for a replica no node can place: on a local instance, whose CPUs
    and GPUs are all there is, start refuses it, naming the numbers, and stops what it started.
    Ray itself is not started: its start and resources are stand-ins."""
    import ray
    from ray import serve
    from bertg4.serve import server as srv
    from bertg4.serve.app import deployment_options
    # the pure check: fixed replicas, the autoscaling lower bound, GPUs
    srv.check_fits(deployment_options(replicas=2), {"CPU": 2.0})
    srv.check_fits(deployment_options(None, min_replicas=1, max_replicas=4, num_cpus=2), {"CPU": 2.0})
    with pytest.raises(ValueError, match=r"2 replica\(s\) x 1 CPU each \(--replica-cpus\) need 2 CPU, but the "
                       r"local Ray instance has 1 \(--num-cpus 1\)"):
        srv.check_fits(deployment_options(replicas=2), {"CPU": 1.0}, num_cpus=1)
    with pytest.raises(ValueError, match=r"need 3 CPU, but the local Ray instance has 2: "):
        srv.check_fits(deployment_options(None, min_replicas=3, max_replicas=4), {"CPU": 2.0})
    with pytest.raises(ValueError, match=r"1 replica\(s\) x 1 GPU each \(--num-gpus\) need 1 GPU.* has 0"):
        srv.check_fits(deployment_options(replicas=1, num_gpus=1), {"CPU": 2.0})
    # wired into start, before Serve starts, with the local instance shut down again
    events = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(srv, "_init_local", lambda num_cpus: events.append(("init", num_cpus)))
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 1.0})
    monkeypatch.setattr(ray, "shutdown", lambda: events.append("ray down"))
    monkeypatch.setattr(serve, "shutdown", lambda: events.append("serve down"))
    monkeypatch.setattr(serve, "start", lambda **kw: events.append("serve started"))
    with pytest.raises(ValueError, match=r"need 2 CPU, but the local Ray instance has 1 \(--num-cpus 1\)"):
        srv.start({"model": "embedded"}, port=free_port(), num_cpus=1, replicas=2)
    assert events == [("init", 1), "serve down", "ray down"]


def test_deploy_folder_configs_are_valid():
    """deploy/serve_config.yaml and the RayService's serveConfigV2 are Serve configs whose
    application args the builder accepts."""
    import os
    import yaml
    from ray.serve.schema import ServeDeploySchema
    from bertg4.serve.app import DEFAULTS
    root = os.path.join(os.path.dirname(__file__), "..", "deploy")
    manifest = yaml.safe_load(open(os.path.join(root, "rayservice.yaml")))
    assert manifest["kind"] == "RayService" and manifest["spec"]["rayClusterConfig"]["rayVersion"] == "2.60.0"
    for cfg in (yaml.safe_load(open(os.path.join(root, "serve_config.yaml"))),
                yaml.safe_load(manifest["spec"]["serveConfigV2"])):
        ServeDeploySchema.model_validate(cfg)
        (app,) = cfg["applications"]
        assert app["import_path"] == "bertg4.serve.app:build_app" and set(app["args"]) <= set(DEFAULTS)


def _in_a_fresh_python(code: str) -> dict:
    """Run ``code`` (it prints one JSON line last) in a new interpreter, whose collector holds
    only what the code makes (a frozen heap is process-wide)."""
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_frozen_heap_leaves_the_oldest_generation_and_pauses_are_counted():
    got = _in_a_fresh_python("""
import gc, json, time
from bertg4.system import GcPauses, freeze_heap
junk = [[i] for i in range(200_000)]  # long-lived objects the collector tracks
pauses = GcPauses(long_ms=0.0).install()  # every pause counts as long here
gc.collect()
before = len(gc.get_objects(generation=2))
frozen = freeze_heap()
after = len(gc.get_objects(generation=2))
t = time.time()
gc.collect()
s = pauses.summary(start=t)
pauses.remove()
print(json.dumps({"frozen": frozen, "count": gc.get_freeze_count(), "before": before, "after": after,
                  "s": s, "t": t, "all": len(pauses.summary()["long"])}))
""")
    assert got["frozen"] >= got["count"] > 200_000  # (frozen objects freed by reference counting leave it)
    assert got["before"] > 200_000 and got["after"] < got["before"] - 200_000  # the junk left generation 2
    s = got["s"]
    assert s["collections_by_generation"]["2"] >= 3 and s["collections"] >= 3  # the three full collections
    assert s["max_ms_by_generation"]["2"] > 0 and s["max_ms"] > 0
    assert s["long"] and all(t >= got["t"] for t, _, _ in s["long"]) and s["long"][-1][2] == 2  # the window
    assert got["all"] >= 3 and got["all"] > len(s["long"])


def test_load_freezes_its_own_heap_for_the_run_only():
    got = _in_a_fresh_python(f"""
import gc, json
from bertg4.serve import loadtest as L
url = "http://127.0.0.1:{free_port()}/v2/models/bert/infer"  # nothing listens: every request fails fast
during = []
real = L.run_load
async def watched(*a, **k):
    during.append(gc.get_freeze_count())
    return await real(*a, **k)
L.run_load = watched
run = L.load(url, [b"{{}}"], 50.0, n_requests=3, duration_s=1.0, timeout_s=2.0)
left = gc.get_freeze_count()
gc.freeze()
mine = gc.get_freeze_count()
L.load(url, [b"{{}}"], 50.0, n_requests=2, duration_s=1.0, timeout_s=2.0)
print(json.dumps({{"during": during, "left": left, "mine": mine, "kept": gc.get_freeze_count(),
                  "client_gc": run["client_gc"],
                  "outcomes": [r["outcome"] for r in run["results"]], "span": run["wall_end"] - run["wall_start"]}}))
""")
    assert got["during"][0] > 1000 and got["left"] == 0  # frozen during the run, handed back after it
    assert got["during"][1] == got["mine"]  # the caller's own freeze, neither added to nor taken
    assert got["mine"] > 0 and got["kept"] == got["mine"]  # a caller's own freeze is left as it was
    assert got["outcomes"] == ["failed"] * 3 and got["span"] > 0
    assert set(got["client_gc"]) >= {"collections", "max_ms", "long"}


def test_gc_fields_take_the_long_pauses_within_the_run():
    from bertg4.serve import loadtest as L
    run = {"client_gc": {"max_ms": 7.0, "long": [[5.0, 7.0, 2]]}, "wall_start": 10.0, "wall_end": 20.0}
    server = {"gc": {"replica": "r1", "frozen_objects": 9, "collections_by_generation": {"0": 5, "1": 2, "2": 1},
                     "long": [[5.0, 300.0, 2], [15.0, 8.0, 2], [25.0, 9.0, 1]]}}
    got = L.gc_fields(run, server)
    assert got == {"client_gc_max_ms": 7.0, "client_gc_long_pauses_ms": [7.0], "server_gc_long_pauses_ms": [8.0],
                   "server_gc_replica": "r1", "server_gc_frozen_objects": 9,
                   "server_gc_collections": {"0": 5, "1": 2, "2": 1}}
    assert "server_gc_long_pauses_ms" not in L.gc_fields(run, {"gc": None})  # a failed read: unknown, not 0
    assert L._gc_cell(got) == "1 (max 8 ms)/1 (max 7 ms)"
    assert L.gc_fields({}, {}) == {} and L._gc_cell({}) == "—"
    assert L._gc_cell({"client_gc_long_pauses_ms": []}) == "?/0"  # a server that does not say


def test_deployment_options_checks():
    from bertg4.serve.app import deployment_options
    with pytest.raises(ValueError, match="both"):
        deployment_options(None, 1, None)
    with pytest.raises(ValueError, match="batches could never fill"):
        deployment_options(1, max_ongoing_requests=2, max_batch_size=8)
    o = deployment_options(2, num_gpus=1, max_batch_size=4)
    assert o["num_replicas"] == 2 and o["ray_actor_options"]["num_gpus"] == 1 and o["max_queued_requests"] == 16


# --- a live server ---------------------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SEQ = 32


@pytest.fixture(scope="module")
def server():
    pytest.importorskip("ray.serve")
    from bertg4.serve.server import start
    srv = start({"model": "embedded", "task": "SST", "seq_length": SEQ, "max_batch_size": 4,
                 "batch_wait_ms": 5, "threads": 1, "max_chars": 500}, port=free_port(), num_cpus=2)
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def reference():
    import bertg4
    return bertg4.load("embedded", task="SST", seq_length=SEQ)


def post(url, raw):
    import urllib.error
    import urllib.request
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=raw), timeout=30) as r:
            return r.status, json.loads(r.read()), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read()), dict(e.headers)


def get(url):
    import urllib.request
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())


def test_routes(server):
    assert server.host == "127.0.0.1"
    assert get(server.url + "/v2/health/live") == {"live": True}
    assert get(server.url + "/v2/health/ready") == {"ready": True}
    assert get(server.url + "/v2/models/bert/ready") == {"name": "bert", "ready": True}
    meta = get(server.url + "/v2/models/bert")
    assert meta["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert [o["name"] for o in meta["outputs"]] == ["label", "probabilities", "truncated"]
    assert meta["parameters"]["seq_length"] == SEQ and meta["parameters"]["max_batch_size"] == 4
    # the replica's own process says how it holds freed memory (its pt predictor on a CPU sets it)
    held = ("glibc: freed memory kept", "set by the environment") if platform.libc_ver()[0] == "glibc" else ("default",)
    assert meta["parameters"]["allocator"].startswith(held)
    assert meta["parameters"]["float32_matmul"] == "default"  # a baseline pt predictor on a CPU
    # the bounded queues it runs under (4 x the max batch each by default): the simulator's limit
    assert (meta["parameters"]["max_ongoing_requests"], meta["parameters"]["max_queued_requests"]) == (16, 16)
    assert meta["parameters"]["num_replicas"] == 1  # the replicas a load record simulates
    assert meta["parameters"]["ingress"] == "proxy"  # Serve's own proxy: no HAProxy, no direct ingress
    # the replica froze its warmed-up heap, and says what its collector has done since
    gc = meta["parameters"]["gc"]
    assert meta["parameters"]["freeze_gc"] is True and gc["frozen_objects"] > 10_000
    assert gc["long_ms"] == 5.0 and set(gc["collections_by_generation"]) == {"0", "1", "2"}
    _, _, headers = post(server.infer_url, body(text=["a fine film"]))
    assert gc["replica"] == headers["x-bertg4-replica"]  # the one replica, which answered both
    status, err, _ = post(server.url + "/v2/models/gpt/infer", body(text=["x"]))
    assert status == 404 and "unknown model 'gpt'" in err["error"]
    assert server.direct_urls == []  # direct ingress is off unless asked for


def test_haproxy_is_refused_where_it_cannot_be_what_was_asked(server, monkeypatch):
    """HAProxy in front needs a Ray instance started with it here; with --direct-ingress, or on
    a cluster joined with --address (whose nodes set it), the error says what to do instead."""
    from bertg4.serve.server import check_haproxy, start
    monkeypatch.delenv("RAY_SERVE_ENABLE_HA_PROXY", raising=False)
    with pytest.raises(ValueError, match="Ray already runs in this process without Serve's HAProxy ingress"):
        start({"model": "embedded", "seq_length": SEQ}, port=free_port(), haproxy=True)
    with pytest.raises(ValueError, match="--direct-ingress"):
        check_haproxy(True, None, False)
    with pytest.raises(ValueError, match="start every Ray node with RAY_SERVE_ENABLE_HA_PROXY=1"):
        check_haproxy(False, "127.0.0.1:6379", False)
    check_haproxy(False, None, False)  # a local instance started here with it: fine
    # an instance this process started with HAProxy in front has no replica servers for direct ingress
    from bertg4.serve import server as srv
    monkeypatch.setattr(srv, "_HAPROXY_RAY", True)
    with pytest.raises(ValueError, match="with HAProxy in front the port is HAProxy's"):
        start({"model": "embedded", "seq_length": SEQ}, port=free_port(), direct_ingress=True)


def test_direct_ingress_needs_the_mode_before_ray_starts(server, monkeypatch):
    from bertg4.serve.server import direct_ingress_urls, start
    monkeypatch.delenv("RAY_SERVE_THROUGHPUT_OPTIMIZED", raising=False)
    with pytest.raises(ValueError, match="must be switched on before Ray starts"):
        start({"model": "embedded", "seq_length": SEQ}, port=free_port(), direct_ingress=True)
    assert direct_ingress_urls("127.0.0.1", server.port) == []  # the mode is off: only the proxy


def test_answers_equal_predict(server, reference, sst2_dev):
    texts = list(sst2_dev.first[:12])
    want_labels = reference.predict(texts)
    feats = reference.featurize(texts)
    logits = reference.infer(feats)
    z = logits - logits.max(-1, keepdims=True)
    want_p = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    got_labels, got_p = [], []
    for k in range(0, len(texts), 3):
        status, out, headers = post(server.infer_url, body(text=texts[k:k + 3]))
        assert status == 200, out
        t = {o["name"]: o for o in out["outputs"]}
        assert t["label"]["datatype"] == "INT64" and t["label"]["shape"] == [3]
        assert t["probabilities"]["shape"] == [3, 2]
        assert t["truncated"]["data"] == feats.truncated[k:k + 3].tolist()
        got_labels += t["label"]["data"]
        got_p += np.array(t["probabilities"]["data"]).reshape(3, 2).tolist()
        assert float(headers["x-bertg4-service-ms"]) > 0 and int(headers["x-bertg4-batch-rows"]) >= 3
    assert got_labels == want_labels.tolist()
    assert np.abs(np.array(got_p) - want_p).max() < 1e-5


def test_truncation_is_reported(server):
    status, out, _ = post(server.infer_url, body(text=["word " * 60, "short"]))
    assert status == 200
    assert {o["name"]: o for o in out["outputs"]}["truncated"]["data"] == [True, False]


MALFORMED = [
    (b'{"inputs": [', 400, "not valid JSON"),
    (json.dumps({"inputs": [{"name": "text", "datatype": "INT64", "shape": [1], "data": [7]}]}).encode(),
     400, "datatype 'INT64'"),
    (json.dumps({"inputs": [{"name": "sentence", "datatype": "BYTES", "shape": [1], "data": ["x"]}]}).encode(),
     400, "unknown input 'sentence'"),
    (json.dumps({"id": "no inputs"}).encode(), 400, "no 'inputs'"),
    (body(text=[""]), 400, "empty text"),
    (body(text=["y" * 501]), 413, "501 characters"),
    (b'{"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["\xff\xfe"]}]}', 400, "UTF-8"),
    (body(text=["a", "b", "c", "d", "e"]), 413, "5 texts"),
]


def test_malformed_tenth_of_a_load(server, reference, sst2_dev):
    """10 % malformed requests mixed into a Poisson load: each gets a 4xx naming its problem,
    every good request is answered correctly."""
    from bertg4.serve.loadtest import run_load
    texts = list(sst2_dev.first[:72])
    bodies, expect, good = [], [], iter(texts)
    for k in range(80):
        if k % 10 == 5:
            raw, status, words = MALFORMED[(k // 10) % len(MALFORMED)]
            bodies.append(raw)
            expect.append((status, words))
        else:
            t = next(good)
            bodies.append(body(text=[t]))
            expect.append((200, t))
    run = asyncio.run(run_load(server.infer_url, bodies, rate=15.0, n_requests=80, duration_s=20,
                               timeout_s=30, keep_bodies=True))
    res = run["results"]
    assert len(res) == 80 and sum(r["outcome"] == "lost" for r in res) == 0
    good = [t for st, t in expect if st == 200]
    want = dict(zip(good, reference.predict(good).tolist()))
    for r, (status, what) in zip(res, expect):
        if status == 200:
            assert r["outcome"] == "ok", r
            out = {o["name"]: o for o in json.loads(r["body"])["outputs"]}
            assert out["label"]["data"] == [want[what]]
        else:
            assert r["status"] == status and r["outcome"] == "rejected", r
            assert what in json.loads(r["error"])["error"]


def test_loadtest_record(server, sst2_dev, tmp_path, measured):
    from bertg4.serve import loadtest as L
    recs = L.sweep(server.url, "bert", [6.0], list(sst2_dev.first), n_requests=40, duration_s=10, warmup_s=0.5,
                   keep_requests=True)
    (r,) = recs
    assert r["timed"] == 40 and r["sent"] > 40  # the warm-up's requests come on top of the timed ones
    assert r["sent"] == r["ok"] + r["rejected"] + r["failed"] + r["lost"]
    assert r["ok"] == r["sent"] and r["lost"] == 0
    assert r["latency_ms_p50"] <= r["latency_ms_p90"] <= r["latency_ms_p99"] <= r["latency_ms_max"]
    assert r["p50_ms_simulated"] > 0 and r["p99_ms_simulated"] >= r["p50_ms_simulated"]
    assert set(r["service_ms_curve"]) == {"1", "2", "3", "4"} and r["overhead_ms_p50"] > 0
    # the replica runs on this machine: its clock is the load generator's, and the batches a request
    # waited for on its way in come out of the overhead the simulator adds
    assert r["clock_shared"] is True and r["overhead_blocked_ms_mean"] >= 0
    assert r["overhead_simulated_ms_p99"] <= r["overhead_ms_p99"] + 1e-9 and r["p99_ms_simulated_raw_overhead"] > 0
    from bertg4.serve.loadtest import MIN_GAP_SAMPLES  # the gap is simulated once enough full batches had one
    assert r["simulated_gap_ms"] == (pytest.approx(r["batch_gap_ms_p50"]) if r["batch_gap_samples"] >= MIN_GAP_SAMPLES
                                     else 0.0)
    assert r["model"] == "all-MiniLM-L6-v2" and r["seq_length"] == SEQ and r["max_batch_size"] == 4
    # the collectors' long pauses in the run: the load generator's, and the replica's (it reports them)
    assert isinstance(r["client_gc_max_ms"], float) and isinstance(r["client_gc_long_pauses_ms"], list)
    assert r["server_gc_frozen_objects"] > 10_000 and isinstance(r["server_gc_long_pauses_ms"], list)
    assert sum(r["server_gc_collections"].values()) > 0  # the replica's collector ran, and is counted
    # the headline draws each batch's service time from the measured spread; the mean curve's beside it
    lo, hi = r["service_spread_p10_p90"]
    assert r["service_spread_batches"] >= 10 and 0 < lo <= hi < 10  # scaled to average 1
    assert 0.2 < r["service_spread_mean_raw"] < 5
    assert r["p99_ms_simulated_mean_curve"] > 0 and r["p99_rel_error_mean_curve"] is not None
    assert r["simulated_service"] == "measured spread"  # the headline draws each batch's time from the spread
    from bertg4.serve.command import write_outputs
    assert len(r["requests"]) == r["sent"] and all("clock" in q for q in r["requests"] if q["outcome"] == "ok")
    paths = write_outputs([{**r, "kind": "loadtest"}, {"kind": "summary", "task": "SST"}], str(tmp_path))
    assert [p.rsplit("/", 1)[1] for p in paths] == ["records.jsonl", "requests.jsonl.gz", "table.md", "loadtest.png"]
    from bertg4.serve.loadtest import read_trace
    lines = read_trace(str(tmp_path))  # the folder, or the file
    assert len(lines) == r["sent"] and {q["level"] for q in lines} == {0} and lines[0]["rate_per_s"] == 6.0
    assert lines == read_trace(paths[1]) and [q["outcome"] for q in lines] == [q["outcome"] for q in r["requests"]]
    assert read_trace(paths[1], kinds=("find_max",)) == []
    assert len(read_trace(paths[1], ("loadtest",), "ok")) == r["ok"]
    with open(paths[0]) as f:
        assert "requests" not in json.loads(f.readline())  # the records stay one small line each
    lo, hi = r["latency_ms_p99_ci90"]  # the run's own chance: a block bootstrap over its send times
    assert 0 < lo <= hi <= r["latency_ms_max"] and r["ci_block_s"] == 0.5
    assert isinstance(r["p99_simulated_in_ci90"], bool) and isinstance(r["p50_simulated_in_ci90"], bool)
    assert r["simulated_limit"] == 32 and r["rejected_fraction"] == r["rejected_fraction_simulated"] == 0.0
    measured("serve: p50 measured / simulated at 6 req/s (ms)",
             f"{r['latency_ms_p50']:.1f} / {r['p50_ms_simulated']:.1f}")


def test_a_record_counts_its_batches_as_the_simulator_does():
    from bertg4.serve import loadtest as L
    # one batch of one request, then one of three: 2 requests per batch, 2.5 per request
    res = [{"outcome": "ok", "latency_s": 0.03, "sent_at": 0.1 * k, "batch": str(b), "batch-size": str(n),
            "service-ms": "20.0", "replica-ms": "25.0"} for k, (b, n) in enumerate([(1, 1), (2, 3), (2, 3), (2, 3)])]
    run = {"results": res, "span_s": 0.5, "schedule_s": 0.4, "rate_per_s": 10.0, "warmup_s": 0.0}
    r = L.load_record(run, {"max_batch_size": 4, "batch_wait_ms": 5.0}, n_sim=500)
    assert r["mean_batch_size"] == 2.0 and r["mean_batch_size_per_request"] == 2.5
    assert r["simulated_limit"] is None and r["rejected_fraction"] == 0.0  # no bounds reported: none simulated


def test_capacity_of_a_real_server_from_a_closed_loop(server, sst2_dev):
    from bertg4.serve import loadtest as L
    cap = L.measure_capacity(server.url, "bert", list(sst2_dev.first), n_requests=150, duration_s=8, warmup_s=0.5)
    assert cap["concurrency"] == 8 and cap["sent"] == cap["ok"] == 150  # twice the max batch of 4; all answered
    assert cap["mean_batch_size"] > 2.5  # a full batch kept waiting: most batches full
    assert cap["errors"] == [] and cap["capacity_per_s"] > 0 and cap["p99_ms_simulated"] is None
    # a closed loop cannot be answered faster than its batches compute
    assert cap["capacity_per_s"] <= 1.15 * cap["capacity_service_per_s"]


def test_loadtest_command_prices_the_best_level_of_the_run(server, tmp_path):
    from bertg4.cli import main
    out = tmp_path / "lt"
    target = 5000.0  # every level meets it: the summary must take the fastest of them all
    assert main(["loadtest", "--url", server.url, "--rates", "3", "--find-max", "--p99-ms", str(target),
                 "--requests", "6", "--duration", "4", "--warmup", "0.5", "--price-per-hour", "0.5",
                 "--offline", "--output", str(out)]) == 0
    recs = [json.loads(line) for line in open(out / "records.jsonl")]
    (summary,) = [r for r in recs if r["kind"] == "summary"]
    levels = [r for r in recs if r["kind"] in ("loadtest", "find_max")]
    assert {r["kind"] for r in levels} == {"loadtest", "find_max"} and all(r["lost"] == 0 for r in levels)
    # a level past the capacity may time no answered request (503s): it has no p99 and does not count
    timed = [r for r in levels if r["latency_ms_p99"] is not None]
    best = max((r for r in timed if r["latency_ms_p99"] <= target and r["rejected"] == r["failed"] == 0),
               key=lambda r: r["achieved_per_s"])
    assert summary["max_rate_per_s"] == best["achieved_per_s"] and summary["max_rate_kind"] == best["kind"]
    assert summary["dollars_per_million"] == pytest.approx(0.5 / (best["achieved_per_s"] * 3600) * 1e6)
    # --offline: the offline curve per batch size, and the ideal queue at the same target from it
    from bertg4.serve.command import queueing_bound
    curve = summary["offline_service_ms_curve"]
    assert sorted(curve, key=int) == ["1", "2", "3", "4"] and all(v > 0 for v in curve.values())
    # its overhead: the path outside the replica at the run's lowest load level
    low = min((r for r in levels if r.get("overhead_ms_p50") is not None), key=lambda r: r["rate_per_s"])
    assert summary["queueing_bound_overhead_rate_per_s"] == low["rate_per_s"]
    assert summary["queueing_bound_overhead_ms"] == max(0.0, low["overhead_ms_p50"])
    bound = queueing_bound(curve, target, 4, 5.0, summary["queueing_bound_overhead_ms"])
    assert summary["queueing_bound_per_s"] == bound > 0
    assert summary["offline_curve_capacity_per_s"] == pytest.approx(4 / (curve["4"] / 1e3))
    assert summary["queueing_bound_vs_curve_capacity"] == bound / summary["offline_curve_capacity_per_s"]
    assert summary["queueing_bound_vs_offline"] == bound / summary["offline_per_s_max_batch"]
    assert summary["served_vs_queueing_bound"] == summary["max_rate_per_s"] / bound


def test_queueing_bound_is_the_queue_of_the_offline_curve():
    """The ideal server's rate at a p99 target: nearly the offline throughput when a batch costs
    what one request does (a GPU's flat curve), far below it when the cost grows with the batch
    (a CPU's); the serving overhead adds latency, not server time; no rate meets a target below
    one request's time."""
    from bertg4.serve import simulate as S
    from bertg4.serve.command import queueing_bound
    flat = {str(b): 10.0 for b in range(1, 5)}
    linear = {str(b): 10.0 * b for b in range(1, 5)}
    offline = 4 / 0.040  # the linear curve's full batch: 100/s
    assert queueing_bound(flat, 50.0, 4, 0.0, 0.0) > 0.8 * 400
    lin = queueing_bound(linear, 50.0, 4, 0.0, 0.0)
    assert 0 < lin < 0.5 * offline
    # the overhead is latency only: 8 ms more per request and an 8 ms looser target change nothing
    assert queueing_bound(linear, 58.0, 4, 0.0, 8.0) == pytest.approx(lin, rel=0.02)
    assert queueing_bound(linear, 58.0, 4, 0.0, 0.0) > 1.05 * lin  # so the 8 ms above was not ignored
    # the batcher's wait is in ms: 5 ms more of it per batch costs rate at a binding target
    assert queueing_bound(linear, 50.0, 4, 5.0, 0.0) < 0.9 * lin
    assert S.max_rate({b: 0.01 * b for b in range(1, 5)}, 0.050, 4, 0.005) == queueing_bound(linear, 50.0, 4, 5.0, 0.0)
    assert queueing_bound(linear, 5.0, 4, 0.0, 0.0) == 0.0
    with pytest.raises(ValueError, match="serving overhead"):
        queueing_bound(linear, 50.0, 4, 0.0, float("nan"))


def test_bound_takes_the_path_outside_the_replica_at_the_lowest_rate(capsys):
    """The summary's bound: the overhead of the lowest-rate load level (not the capacity run's,
    not the single-request latency over a direct predict) at a binding target; and a reason,
    no bound, with a token budget, several texts per request or no load level."""
    from bertg4.serve.command import _bound, queueing_bound
    curve = {str(b): 10.0 * b for b in range(1, 5)}
    info = {"max_batch_size": 4, "batch_wait_ms": 5.0}
    records = [{"kind": "capacity", "rate_per_s": 1.0, "overhead_ms_p50": 50.0},
               {"kind": "loadtest", "rate_per_s": 30.0, "overhead_ms_p50": 9.0},
               {"kind": "find_max", "rate_per_s": 10.0, "overhead_ms_p50": 3.0}]

    def summary():
        return {"offline_service_ms_curve": dict(curve), "offline_per_s_max_batch": 100.0,
                "max_rate_per_s": 20.0, "serving_overhead_ms_batch1": 30.0}
    s = summary()
    _bound(s, info, 60.0, "idle", records)
    assert s["queueing_bound_overhead_ms"] == 3.0 and s["queueing_bound_overhead_rate_per_s"] == 10.0
    assert s["queueing_bound_per_s"] == queueing_bound(curve, 60.0, 4, 5.0, 3.0)
    assert s["queueing_bound_per_s"] != queueing_bound(curve, 60.0, 4, 5.0, 30.0)
    assert 0 < s["queueing_bound_vs_curve_capacity"] < 0.9  # a binding target
    assert s["served_vs_queueing_bound"] == 20.0 / s["queueing_bound_per_s"]
    for kw, levels, why in ((dict(), [], "no load level"), (dict(texts_per_request=2), records, "2 texts per request"),
                            (dict(), records, "token budget")):
        s = summary()
        _bound(s, {**info, "max_batch_tokens": 256} if why == "token budget" else info, 60.0, "idle", levels, **kw)
        assert s["queueing_bound_per_s"] is None and "queueing_bound_vs_offline" not in s
        assert why in capsys.readouterr().out


def test_curve_rows_spread_over_the_whole_set():
    from bertg4.serve.command import curve_rows
    texts = [f"t{i}" for i in range(872)]
    starts = [int(curve_rows(texts, 4, k)[0][1:]) for k in range(3)]
    assert curve_rows(texts, 4, 0) == ["t0", "t1", "t2", "t3"]
    assert max(starts) > 872 / 2 and len({s // 200 for s in starts}) == 3  # three calls, three parts of the set
    assert curve_rows(texts[:3], 5, 0) == ["t0", "t1", "t2", "t0", "t1"]  # wraps around


@pytest.mark.parametrize("task, rows", [
    ("QA", [("Who wrote the report?", "The report was written by Ada Lovelace in 1843."),
            ("Where is the tower?", "The tower stands in Paris, near the river.")]),
    ("MRPC", [("The cat sat.", "A cat was sitting."), ("It rained.", "The sun was out.")]),
    ("embedding", ["a sentence to embed", "another one"]),
])
def test_answer_per_task_equals_predict(task, rows):
    """What a replica computes for one batch is Predictor.predict's answer, as protocol tensors."""
    import bertg4
    from bertg4.serve.app import answer, split
    pred = bertg4.load("embedded", task=task, seq_length=64)
    out = answer(pred, rows)
    want = pred.predict(rows)
    if task == "QA":
        assert out["answer"] == [w["text"] for w in want] and out["start_char"] == [w["start_char"] for w in want]
    elif task == "MRPC":
        assert out["label"].tolist() == want.tolist() and out["probabilities"].shape == (2, 2)
    else:
        assert np.abs(out["embedding"] - want).max() < 1e-5 and out["embedding"].shape == (2, 384)
    tensors = P.outputs(pred.task, out)
    specs = P.output_specs(pred.task, pred)
    assert [t["name"] for t in tensors] == [s["name"] for s in specs]
    assert all(t["datatype"] == s["datatype"] and t["shape"][0] == 2 for t, s in zip(tensors, specs))
    first, second = split(out, [1, 1])
    assert all(len(v) == 1 for v in first.values())


def test_exported_model_is_served_as_loaded(tmp_path):
    """--exported-model: the replica loads an export (engine read from its manifest) and answers
    as the predictor that wrote it."""
    import bertg4
    from bertg4.serve.app import DEFAULTS, answer, load_predictor
    p = bertg4.load("embedded", task="SST", seq_length=32)
    p.export(str(tmp_path))
    q = load_predictor({**DEFAULTS, "exported_model": str(tmp_path)})
    rows = ["a fine film", "a dull and lifeless film that never seems to end"]
    a, b = answer(p, rows), answer(q, rows)
    assert q.engine == "pt" and a["label"].tolist() == b["label"].tolist()
    assert np.abs(a["probabilities"] - b["probabilities"]).max() < 1e-5
    with pytest.raises(FileNotFoundError, match="not a bertg4 export"):
        load_predictor({**DEFAULTS, "exported_model": str(tmp_path / "nothing")})


def _level(rate, p99, kind="loadtest", rejected=0):
    return {"kind": kind, "rate_per_s": rate, "achieved_per_s": rate, "latency_ms_p99": p99,
            "lost": 0, "failed": 0, "rejected": rejected}


def test_bracket_of_the_levels_already_measured():
    from bertg4.serve.loadtest import CAPACITY, bracket
    levels = [_level(150.0, 60.0, kind=CAPACITY), _level(20.0, 40.0), _level(40.0, 80.0), _level(60.0, 120.0),
              _level(80.0, 95.0, rejected=3)]  # rejected: does not meet the target, whatever its p99
    assert bracket(levels, 100.0) == (40.0, 60.0)
    assert bracket(levels, 100.0, capacity_per_s=55.0) == (40.0, 55.0)  # the capacity bounds it when lower
    assert bracket(levels, 100.0, capacity_per_s=30.0) == (40.0, 60.0)  # (not when below what met the target)
    assert bracket(levels, 30.0) == (0.0, 20.0)  # none met it
    assert bracket(levels[:3], 100.0) == (40.0, None)  # all met it, nothing above
    assert bracket(levels[:1], 100.0, 150.0) is None  # no open-loop level: nothing to start from


def test_find_max_spends_its_steps_inside_what_the_levels_bracket(monkeypatch):
    from bertg4.serve import loadtest as L
    sent = []

    def sweep(url, name, rates, texts, *a, **kw):  # a server whose p99 grows with the rate: 150 ms at 100/s
        sent.extend(rates)
        return [_level(r, 50.0 + r, kind="loadtest") for r in rates]
    monkeypatch.setattr(L, "sweep", sweep)
    monkeypatch.setattr(L, "server_info", lambda url, name: {"max_batch_size": 4, "batch_wait_ms": 5.0})
    monkeypatch.setattr(L, "sequential_latency", lambda *a, **kw: {"single_ms_p50": 20.0})
    monkeypatch.setattr(L, "bodies_for", lambda info, texts, k=1: [b"{}"])
    levels = [_level(60.0, 110.0), _level(130.0, 180.0)]
    fm = L.find_max("http://127.0.0.1:1", "bert", 150.0, ["a text"], steps=4, levels=levels, capacity_per_s=120.0)
    assert fm["start"] == [60.0, 120.0] and sent[0] == 90.0  # no calibration: the first step halves the bracket
    assert len(sent) == 4 and all(60.0 < r < 120.0 for r in sent)
    assert 95.0 <= fm["best"]["achieved_per_s"] <= 100.0
    sent.clear()
    fm = L.find_max("http://127.0.0.1:1", "bert", 150.0, ["a text"], steps=2)  # alone: a low rate first
    assert sent[0] == pytest.approx(0.5 * 1e3 / 20.0) and len(sent) == 3 and fm["start"][0] == sent[0]
