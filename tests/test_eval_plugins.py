"""docs/extending.md's eval backend and trace format examples, copied into a scratch workflow, run as the guide says:
the toy backend answers a real eval job, the toy format lays out curated examples and its marker is found."""
from __future__ import annotations

import json
import re
from pathlib import Path

from workflow import REPO, make_workdir, snakemake, tiny_config

GUIDE = REPO / "docs" / "extending.md"
BLOCK = re.compile(r"```python\n# file: (?P<path>\S+)\n(?P<code>.*?)```", re.DOTALL)
EVAL_ITEMS = Path(__file__).parent / "data" / "eval_items.json"
CPU = {"MEDS1_ALLOW_CPU": "1"}  # GPU rules on this CPU machine


def guide_file(path: str) -> str:
    return next(m["code"] for m in BLOCK.finditer(GUIDE.read_text(encoding="utf-8")) if m["path"] == path)


def workdir(tmp_path, tiny_model_dir, experiments: dict, plugin: str, **workflow) -> Path:
    wd = make_workdir(tmp_path / "w", results={"experiments": experiments},
                      config=tiny_config(tiny_model_dir, eval_file=EVAL_ITEMS),
                      workflow={"experiments": list(experiments), "wandb_mode": "disabled",
                                "curation_llm": "offline-rules", "plugins": [plugin], **workflow})
    (wd / plugin).parent.mkdir(parents=True, exist_ok=True)
    (wd / plugin).write_text(guide_file(plugin))
    return wd


def test_the_guides_backend_answers_an_eval_job(tmp_path, tiny_model_dir):
    eval_block = {"backend": "fixed-answer", "backend_options": {"fixed-answer": {"text": "The answer is B."}}}
    wd = workdir(tmp_path, tiny_model_dir, {"base": {"config": {
        "model_key": "tiny", "curation": None, "datasets": {"eval": "evalset"}, "eval": eval_block}}},
        "plugins/fixed_answer.py", eval={"bootstrap_resamples": 100})
    out = snakemake(wd, "eval/base/metrics.json", timeout=600, env=CPU)
    assert out.returncode == 0, out.stderr[-3000:]
    metrics = json.loads((wd / "eval/base/metrics.json").read_text())
    items = [i for group in json.loads(EVAL_ITEMS.read_text()).values() for i in group]
    assert metrics["backend"] == "fixed-answer" and metrics["overall"]["n"] == len(items)
    answered_b = {src: sum(i["answer_idx"] == "B" for i in group) / len(group)
                  for src, group in json.loads(EVAL_ITEMS.read_text()).items()}
    assert {s: b["accuracy"] for s, b in metrics["sources"].items()} == answered_b

    results = json.loads((wd / "results.json").read_text())
    results["experiments"]["base"]["config"]["eval"]["backend_options"]["fixed-answer"] = {"txt": "B"}
    (wd / "results.json").write_text(json.dumps(results))
    out = snakemake(wd, "-n", env=CPU)
    errors = [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("error: ")]
    assert out.returncode != 0 and len(errors) == 1 and "unknown key 'txt'" in errors[0]


def test_the_guides_format_lays_out_curated_examples(tmp_path, tiny_model_dir):
    wd = workdir(tmp_path, tiny_model_dir, {"xml": {"config": {
        "model_key": "tiny", "curation": {"method": "random", "n_samples": 6, "format": "xml-tags"},
        "training_params": {"num_epochs": 1, "batch_size": 2, "max_length": 384},
        "datasets": {"curate": "sft", "eval": "evalset"}}}}, "plugins/xml_format.py")
    out = snakemake(wd, "curated/xml/stats.json", timeout=600, env=CPU)
    assert out.returncode == 0, out.stderr[-3000:]
    from datasets import load_from_disk

    reply = load_from_disk(str(wd / "curated/xml/dataset"))["train"][0]["completion"][0]["content"]
    assert reply.startswith("<reasoning>\n") and "\n</reasoning>\n<answer>" in reply and reply.endswith("</answer>")
