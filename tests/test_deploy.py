"""``bertg4 deploy`` end to end (small sizes), export/reload, and its error messages."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import bertg4
from bertg4 import data as D
from bertg4.cli import main
from bertg4.pt import load_exported

SST_SAMPLE = os.path.join(D.SAMPLES, "sst_sample.tsv")
SMALL = ["--batch-size", "8", "--seq-length", "32", "--max-iters", "2", "--warmup", "1",
         "--no-progress"]


def run(args, tmp_path):
    out = tmp_path / "out"
    code = main(["deploy", *args, "--output-dir", str(out)])
    rec = out / "deploy_record.json"
    return code, (json.loads(rec.read_text()) if rec.exists() else None), out


def test_deploy_sst_exports_times_and_scores(tmp_path, capsys):
    code, rec, out = run(["--task", "SST", "--data", SST_SAMPLE, *SMALL], tmp_path)
    assert code == 0
    printed = capsys.readouterr().out
    assert "| batch | seq | ms/batch mean |" in printed and "seq/s" in printed
    assert (out / "model.pt2").is_file() and (out / "vocab.txt").is_file()
    for key in ("latency_ms_mean", "latency_ms_p50", "latency_ms_p90", "latency_ms_p99",
                "sequences_per_s", "tflops_achieved", "accuracy", "device_name", "versions",
                "date", "command"):
        assert key in rec, key
    assert rec["batch_size"] == 8 and rec["seq_length"] == 32 and rec["iterations"] == 2
    assert rec["examples"] == 32 and rec["of"] == 32 and rec["data"].endswith("sst_sample.tsv")
    assert 0.0 <= rec["accuracy"] <= 1.0
    assert "linear probe shipped with bertg4" in rec["head"]  # the embedded model's SST head, named
    assert rec["latency_ms_p50"] <= rec["latency_ms_p99"]
    assert rec["sequences_per_s"] > 0 and rec["versions"]["torch"]

    # --only-infer reloads the export and gives the same accuracy on the same data
    code, rec2, _ = run(["--task", "SST", "--data", SST_SAMPLE, "--only-infer", *SMALL], tmp_path)
    assert code == 0 and rec2["accuracy"] == rec["accuracy"]
    assert "exported" in rec2["notes"][0] or rec2["exported_model"]


def test_exported_model_equals_live_model(tmp_path):
    live = bertg4.load("embedded", task="SST", seq_length=64)
    live.export(str(tmp_path))
    again = load_exported(str(tmp_path))
    sents = D.sample_sst().first
    for n, L in [(1, 16), (5, 64), (32, 40)]:  # dynamic batch and sequence dimensions
        batch = live.tokenizer.encode_sentences(sents[:n], seq_len=L)
        np.testing.assert_allclose(again(batch), live(batch), atol=1e-5, rtol=0)
    assert again.predict(sents[:4]).tolist() == live.predict(sents[:4]).tolist()
    with pytest.raises(ValueError, match="exported for cpu, not cuda"):
        load_exported(str(tmp_path), "cuda")


def test_deploy_qa_and_embedding_and_hf(tmp_path):
    code, rec, _ = run(["--task", "QA", *SMALL[:2], "--seq-length", "64", *SMALL[4:]], tmp_path / "qa")
    assert code == 0 and rec["task"] == "QA" and rec["examples"] == 6
    assert len(rec["sample_answers"]) == 3
    code, rec, _ = run(["--task", "embedding", "--max-eval", "40", *SMALL], tmp_path / "emb")
    assert code == 0 and rec["task"] == "embedding" and "accuracy" not in rec
    code, rec, out = run(["--engine", "hf", "--data", SST_SAMPLE, *SMALL], tmp_path / "hf")
    assert code == 0 and rec["engine"] == "hf" and not (out / "model.pt2").exists()


def test_pair_task_without_data_says_so(tmp_path, capsys):
    code, rec, _ = run(["--task", "MRPC", *SMALL], tmp_path)
    assert code == 0 and "accuracy" not in rec
    assert "without accuracy" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--task", "NER"], "unknown task 'NER'"),
    (["--batch-size", "0"], "must be a positive integer, got 0"),
    (["--batch-size", "-4"], "must be a positive integer, got -4"),
    (["--batch-size", "many"], "'many' is not an integer"),
])
def test_argument_errors(args, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["deploy", *args, "--output-dir", str(tmp_path)])
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def _bad_data(tmp_path):
    p = tmp_path / "latin1.tsv"
    p.write_bytes("sentence\tlabel\nna\xefve but fun\t1\n".encode("latin-1"))
    return str(p)


def _gpt2_folder(tmp_path):
    d = tmp_path / "gpt2"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_layer": 12}))
    return str(d)


def _empty_text(tmp_path):
    p = tmp_path / "empty.tsv"
    p.write_text("sentence\tlabel\n \t1\ngood\t1\n")
    return str(p)


@pytest.mark.parametrize("make_args, message", [
    (lambda t: ["--seq-length", "1024"], "exceeds the model's 512 position embeddings"),
    (lambda t: ["--data", _bad_data(t)], "not UTF-8 text"),
    (lambda t: ["--data", _empty_text(t)], "sentence #0 is empty"),
    (lambda t: ["--model", _gpt2_folder(t)], "model_type 'gpt2', not 'bert'"),
    (lambda t: ["--model", str(t / "missing.params")], "no such file"),
    (lambda t: ["--engine", "hf", "--recipe", "graph-pass-fp32"], "transformers reference runs as shipped"),
    (lambda t: ["--only-infer", "--exported-model", str(t / "nope")], "not a bertg4 export directory"),
    (lambda t: ["--device", "cuda"], "sees no CUDA GPU"),
])
def test_runtime_errors(make_args, message, tmp_path, capsys):
    args = make_args(tmp_path)
    if "cuda" in args and _has_cuda():
        pytest.skip("a CUDA GPU is present")
    code = main(["deploy", *SMALL, *args, "--output-dir", str(tmp_path / "o")])
    assert code == 2
    assert message in capsys.readouterr().err


def test_console_script_and_env():
    out = subprocess.run([sys.executable, "-m", "bertg4.cli", "env"], capture_output=True, text=True,
                         check=True)
    info = json.loads(out.stdout)
    assert info["torch"] and info["bertg4"] == bertg4.__version__


def _has_cuda():
    import torch
    return torch.cuda.is_available()
