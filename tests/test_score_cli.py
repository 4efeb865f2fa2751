"""python -m meds1.evaluate.score: reproduces compute_metrics byte for byte; bad input is one line and exit 2."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from meds1.evaluate.metrics import compute_metrics
from meds1.evaluate.score import main
from meds1.io import write_json

REPO = Path(__file__).resolve().parents[1]
OPTIONS = {"A": "alpha", "B": "beta", "C": "gamma"}
EXTRA = {"experiment": "base", "config_hash": "abc123", "model": {"key": "tiny", "path": "models/tiny"},
         "backend": "hf", "sampling": {"max_new_tokens": 64, "temperature": 0.0, "top_p": 1.0, "batch_size": 4},
         "dataset": "demo-eval"}


def _record(i, source, run, output):
    return {"id": f"{source}-{i}", "source": source, "question": f"question {i}?", "options": OPTIONS,
            "answer_idx": "ABC"[i % 3], "output": output, "run": run, "approach": "default",
            "n_output_tokens": 7, "n_reasoning_tokens": 3}


@pytest.fixture(scope="module")
def records():
    outputs = ["The answer is A.", "## Final Response\nB", "gamma", "no idea", "Answer: (C)", "it is betta"]
    return [_record(i, src, run, outputs[(i + run + len(src)) % len(outputs)])
            for src in ("MedQA", "PubMedQA") for i in range(9) for run in range(2)]


@pytest.fixture()
def generations(tmp_path, records):
    path = tmp_path / "generations.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def _run_cli(*args):
    return subprocess.run([sys.executable, "-m", "meds1.evaluate.score", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True)


def test_cli_reproduces_the_eval_rule_byte_for_byte(tmp_path, generations, records):
    # what the eval rule writes: compute_metrics + write_json
    rule_output = tmp_path / "eval" / "metrics.json"
    write_json(rule_output, compute_metrics(records, bootstrap_resamples=200, seed=5, extra=EXTRA))
    rescored = tmp_path / "rescored.json"
    done = _run_cli(generations, "-o", rescored, "--extra-from", rule_output)
    assert done.returncode == 0, done.stderr
    assert rescored.read_bytes() == rule_output.read_bytes()       # settings taken from the old file


def test_explicit_settings_match_compute_metrics(tmp_path, generations, records):
    out = tmp_path / "m.json"
    assert main([str(generations), "-o", str(out), "--similarity", "--bootstrap-resamples", "150", "--seed", "9"]) == 0
    expected = tmp_path / "expected.json"
    write_json(expected, compute_metrics(records, similarity=True, bootstrap_resamples=150, seed=9))
    assert out.read_bytes() == expected.read_bytes()
    written = json.loads(out.read_text())
    assert written["matcher"]["similarity"] is True
    assert written["ci"]["bootstrap"] == {"method": "percentile", "resamples": 150, "seed": 9}
    assert "experiment" not in written


def test_flags_override_the_old_settings(tmp_path, generations, records):
    old = tmp_path / "old.json"
    write_json(old, compute_metrics(records, bootstrap_resamples=200, seed=5, extra=EXTRA))
    out = tmp_path / "new.json"
    assert main([str(generations), "-o", str(out), "--extra-from", str(old), "--seed", "6", "--similarity"]) == 0
    written = json.loads(out.read_text())
    assert written["ci"]["bootstrap"] == {"method": "percentile", "resamples": 200, "seed": 6}
    assert written["matcher"]["similarity"] is True
    assert {k: written[k] for k in EXTRA} == EXTRA


@pytest.mark.parametrize(("content", "message"), [
    ('{"id": "x"\n', "line 1: invalid JSON"),
    (None, "line 3: missing key 'output'"),
    (None, "line 2: 'run' must be a non-negative integer"),
    ("\n\n", "no generations"),
])
def test_bad_generations_name_file_and_line(tmp_path, records, capsys, content, message):
    path = tmp_path / "generations.jsonl"
    lines = [json.dumps(r) for r in records[:4]]
    if "missing key" in message:
        lines[2] = json.dumps({k: v for k, v in records[2].items() if k != "output"})
    if "'run'" in message:
        lines[1] = json.dumps({**records[1], "run": "first"})
    path.write_text(content if content is not None else "\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "metrics.json"
    assert main([str(path), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err and message in err
    assert not out.exists()


def test_missing_file_through_the_real_cli(tmp_path):
    out = tmp_path / "metrics.json"
    done = _run_cli(tmp_path / "nope.jsonl", "-o", out)
    assert done.returncode == 2
    assert done.stderr.strip() == f"error: {tmp_path / 'nope.jsonl'}: file not found"
    assert "Traceback" not in done.stderr and not out.exists()


def test_bad_extra_from_is_a_one_line_error(tmp_path, generations, capsys):
    old = tmp_path / "old.json"
    old.write_text("{not json", encoding="utf-8")
    out = tmp_path / "m.json"
    assert main([str(generations), "-o", str(out), "--extra-from", str(old)]) == 2
    assert f"{old}: line 1: invalid JSON" in capsys.readouterr().err
    assert not out.exists()


def test_lines_without_run_or_approach_take_run_0_and_the_primary_approach(tmp_path, records, capsys):
    """The documented line format: id, source, question, options, answer_idx, output (run, approach optional)."""
    bare = [{k: v for k, v in r.items() if k not in ("run", "approach", "n_output_tokens", "n_reasoning_tokens")}
            for r in records if r["run"] == 0]
    path = tmp_path / "bare.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in bare), encoding="utf-8")
    out = tmp_path / "m.json"
    assert main([str(path), "-o", str(out)]) == 0, capsys.readouterr().err
    written = json.loads(out.read_text())
    assert written["primary_approach"] == "reasoning" and written["overall"]["n"] == 18
    expected = compute_metrics([{**r, "approach": "reasoning"} for r in records if r["run"] == 0])
    assert written["overall"] == expected["overall"]
    assert "run (default 0), approach (default: the primary approach)" in " ".join(_run_cli("--help").stdout.split())


def test_eval_rule_and_cli_agree_on_a_tts_experiment(tmp_path, records):
    """The headline is the primary approach in both (EvalSettings.primary_approach), not the first in the file."""
    from meds1.evaluate.run import compute_and_write_metrics

    tts = [{**r, "approach": approach, "output": output} for r in records if r["run"] == 0
           for approach, output in (("budget_512", "no idea"), ("immediate", "Answer: A"), ("reasoning", r["output"]))]
    path = tmp_path / "generations.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in tts), encoding="utf-8")
    spec = {"experiment": "tts", "seed": 3, "bootstrap": {"resamples": 120, "seed": 3}, "dataset": {"key": "d"},
            "model": {"key": "tiny"}}
    rule = compute_and_write_metrics(tts, spec, "models/tiny", "hf", tmp_path / "rule.json")
    assert rule["primary_approach"] == "reasoning"
    assert main([str(path), "-o", str(tmp_path / "cli.json"), "--extra-from", str(tmp_path / "rule.json")]) == 0
    assert (tmp_path / "cli.json").read_bytes() == (tmp_path / "rule.json").read_bytes()
    assert main([str(path), "-o", str(tmp_path / "bare.json"), "--bootstrap-resamples", "120", "--seed", "3"]) == 0
    bare = json.loads((tmp_path / "bare.json").read_text())
    assert {k: bare[k] for k in ("sources", "overall", "test_time_scaling", "primary_approach")} == {
        k: rule[k] for k in ("sources", "overall", "test_time_scaling", "primary_approach")}
    assert rule["overall"]["accuracy"] != rule["test_time_scaling"]["budget_512"]["accuracy"]
