"""`bertg4 cost`: records in, $ per 1M requests (and p99-target costs) out."""
import json

import pytest

from bertg4 import cli


def _records(path, device="Tesla T4", host="gpu-box"):
    rows = []
    for b, ms in ((1, 4.0), (8, 12.0), (128, 175.2)):
        rows.append({"engine": "pt", "recipe": "all", "model": "bert_12_768_12", "dtype": "float16",
                     "device_name": device, "device": "cpu" if "Xeon" in device else "cuda", "host": host,
                     "batch_size": b, "seq_length": 128, "status": "ok",
                     "latency_ms_mean": ms, "latency_ms_p50": ms, "sequences_per_s": b / ms * 1e3})
    rows.append({"engine": "pt", "recipe": "+true_fp16", "status": "not applicable", "reason": "cpu"})
    rows.append({"kind": "numerics", "recipe": "fp16", "rel_err_vs_fp32": 1e-3})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_cost_prices_records_and_writes_files(tmp_path, capsys):
    recs = _records(tmp_path / "records.jsonl")
    out = tmp_path / "cost"
    rc = cli.main(["cost", recs, "--instance", "g4dn.xlarge", "--instance", "mybox=1.0",
                   "--slo-ms", "10,50", "--output", str(out)])
    assert rc == 0
    rows = [json.loads(line) for line in (out / "cost.jsonl").read_text().splitlines()]
    priced = [r for r in rows if r.get("kind") in ("measured", "hypothetical")]
    assert len(priced) == 6  # 3 timed records x 2 instances; n/a and numerics rows are not priced
    b128 = next(r for r in priced if r["instance"] == "g4dn.xlarge" and r["batch_size"] == 128)
    # 128 / 0.1752 s = 730.6 seq/s at $0.526/h -> $0.20 per million; measured on a T4: not hypothetical
    assert b128["dollars_per_million"] == pytest.approx(0.526 / (730.594 * 3600) * 1e6, rel=1e-4)
    assert (b128["kind"], b128["hypothetical"]) == ("measured", False)
    # a price for some other box is not this T4's: hypothetical, in its own table
    assert {r["kind"] for r in priced if r["instance"] == "mybox"} == {"hypothetical"}
    slo = [r for r in rows if r.get("kind") == "slo"]
    assert {(r["instance"], r["p99_target_s"]) for r in slo} == {
        ("g4dn.xlarge", 0.01), ("g4dn.xlarge", 0.05), ("mybox", 0.01), ("mybox", 0.05)}
    loose = next(r for r in slo if r["instance"] == "g4dn.xlarge" and r["p99_target_s"] == 0.05)
    tight = next(r for r in slo if r["instance"] == "g4dn.xlarge" and r["p99_target_s"] == 0.01)
    assert loose["max_rate_per_s"] >= tight["max_rate_per_s"] > 0
    md = (out / "cost.md").read_text()
    assert "article (reference)" in md and "| 3.310 |" in md
    measured, hypothetical = md.split("**Hypothetical, not measured**")
    assert "| measured | fixed shape | g4dn.xlarge |" in measured and "mybox" not in measured
    assert hypothetical.count("| hypothetical | fixed shape | mybox |") == 3
    assert (out / "cost.png").stat().st_size > 1000 and (out / "slo.png").stat().st_size > 1000


def test_cost_rejects_bad_input(tmp_path, capsys):
    recs = _records(tmp_path / "records.jsonl")
    assert cli.main(["cost", recs, "--instance", "mybox=-3", "--output", str(tmp_path)]) == 2
    assert "mybox" in capsys.readouterr().err
    assert cli.main(["cost", recs, "--instance", "no.such.type", "--output", str(tmp_path)]) == 2
    assert "g4dn.xlarge" in capsys.readouterr().err  # the error lists the known names
    assert cli.main(["cost", str(tmp_path / "missing.jsonl")]) == 2
    assert "missing.jsonl" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"engine": "pt"\n')
    assert cli.main(["cost", str(bad)]) == 2
    assert "not valid JSONL" in capsys.readouterr().err
    assert cli.main(["cost", "--list"]) == 0
    assert "c5.xlarge@2020" in capsys.readouterr().out


def test_cost_never_prices_a_cpu_at_a_gpu_instance(tmp_path, capsys):
    import platform
    recs = _records(tmp_path / "records.jsonl", device="Intel Xeon (2 cores)", host=platform.node())
    out = tmp_path / "cost"
    # default instances: the current catalogue, every one a GPU instance -> nothing measured
    assert cli.main(["cost", recs, "--output", str(out)]) == 0
    rows = [json.loads(line) for line in (out / "cost.jsonl").read_text().splitlines()]
    assert rows and {r["kind"] for r in rows} == {"hypothetical"}
    md = (out / "cost.md").read_text()
    assert "None: no record here ran on the hardware" in md and "this-machine=PRICE" in md
    assert (out / "cost.png").stat().st_size > 1000  # the article's references alone, labelled
    # a price for this machine (the records' host) prices them as measured
    assert cli.main(["cost", recs, "--instance", "this-machine=0.5", "--instance", "c5.xlarge@2020",
                     "--output", str(out)]) == 0
    rows = [json.loads(line) for line in (out / "cost.jsonl").read_text().splitlines()]
    kinds = {(r["instance"], r["kind"]) for r in rows}
    assert kinds == {("this-machine", "measured"), ("c5.xlarge@2020", "hypothetical")}
    b128 = next(r for r in rows if r["instance"] == "this-machine" and r["batch_size"] == 128)
    assert b128["dollars_per_million"] == pytest.approx(0.5 / (128 / 0.1752 * 3600) * 1e6)
