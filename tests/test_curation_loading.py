"""Training data loading: the seed's layouts (dict-of-columns JSON, list-valued s1 traces, NEJM case reports) through
config alone, content order and ids, and every kind of bad input as one line naming file, row and column."""
from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from curation_helpers import DEMO_EVAL, TEST_DATA
from meds1.curation.pipeline import curate
from meds1.data import normalise
from meds1.data.train import load_train_dataset
from meds1.errors import MedS1Error
from meds1.registry import load_registry
from workflow import tiny_config


def load(path, **entry):
    return load_train_dataset({"key": "t", "file_path": str(path), **entry})


# ------------------------------------------------------------------------------------------------- the seed's layouts
def test_dict_of_columns_json_loads():
    df = load(TEST_DATA / "curation_columns.json")
    assert len(df) == 3 and list(df["Question"]) == sorted(df["Question"])
    by_question = df.set_index("Question")
    assert by_question.loc["Which vitamin deficiency causes scurvy?", "Response"] == "Vitamin C deficiency."


def test_dict_of_column_lists_loads_too(tmp_path):
    data = json.loads((TEST_DATA / "curation_columns.json").read_text())
    (tmp_path / "lists.json").write_text(json.dumps({col: list(v.values()) for col, v in data.items()}))
    pd.testing.assert_frame_equal(load(tmp_path / "lists.json"), load(TEST_DATA / "curation_columns.json"))


def test_s1_normaliser_renames_and_unwraps_the_trajectory_lists():
    df = load(TEST_DATA / "curation_s1_style.jsonl", normalise="s1")
    row = df.set_index("Question").loc["Which organ makes insulin?"]
    assert row["Complex_CoT"].startswith("Insulin is secreted") and row["Response"].startswith("The pancreas")


def test_a_one_element_list_cell_is_unwrapped_without_a_normaliser():
    df = load(TEST_DATA / "curation_s1_style.jsonl", columns={"Question": "question", "Response": "solution",
                                                              "Complex_CoT": "thinking_trajectories"})
    assert not any(t.startswith("[") for t in df["Complex_CoT"])


@pytest.fixture
def nejmcr_with_a_huge_case(tmp_path):
    rows = json.loads((TEST_DATA / "curation_nejmcr.json").read_text())
    rows.append({**rows[0], "presentation": "A very long case.", "markdown": "pain fever " * 6000})
    path = tmp_path / "nejmcr.json"
    path.write_text(json.dumps(rows))
    return path


def test_nejmcr_diagnosis_priority_and_the_8192_token_filter(nejmcr_with_a_huge_case, tiny_model_dir):
    df = load_train_dataset({"key": "nejm", "file_path": str(nejmcr_with_a_huge_case), "normalise": "nejmcr"},
                            tokenizer_path=str(tiny_model_dir))
    assert set(df["Response"]) == {"Infective endocarditis due to viridans streptococci.", "Pheochromocytoma.",
                                   normalise.NEJMCR_NO_DIAGNOSIS}  # clinical_and_final before pathological
    assert all(q.endswith(normalise.NEJMCR_QUESTION) for q in df["Question"])
    assert df.attrs["load_report"]["dropped"] == {"over 8192 tokens": 1}


def test_nejmcr_without_a_base_tokenizer_is_one_line():
    with pytest.raises(MedS1Error, match="key 'train_datasets.t.normalise'.*model_choices.base"):
        load(TEST_DATA / "curation_nejmcr.json", normalise="nejmcr")


def test_csv_loads(tmp_path):
    pd.read_json(TEST_DATA / "curation_columns.json").to_csv(tmp_path / "rows.csv", index=False)
    pd.testing.assert_frame_equal(load(tmp_path / "rows.csv"), load(TEST_DATA / "curation_columns.json"))


def test_empty_rows_are_dropped_and_counted_options_lists_lettered():
    df = load(TEST_DATA / "curation_sft.json")
    assert len(df) == 4 and df.attrs["load_report"] == {"rows_read": 5, "rows": 4, "dropped": {"empty Complex_CoT": 1}}
    croup = df[df["question"].str.contains("barking")].iloc[0]
    assert croup["options"]["A"] == "Parainfluenza virus" and croup["answer_idx"] == "A"


def test_content_ids_are_stable_and_unique_for_copies(tmp_path):
    rows = json.loads((TEST_DATA / "curation_sft.json").read_text())
    (tmp_path / "a.json").write_text(json.dumps(rows + [rows[0]]))
    (tmp_path / "b.json").write_text(json.dumps([rows[0]] + rows[::-1]))
    a, b = load(tmp_path / "a.json"), load(tmp_path / "b.json")
    assert list(a["id"]) == list(b["id"]) and a["id"].is_unique
    assert sum(i.endswith("-2") for i in a["id"]) == 1 and all(i.startswith("t-") for i in a["id"])


# ------------------------------------------------------------------------------------------------- one line each
def write(tmp_path, name, content: str | bytes):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


BAD = [
    ("latin1.json", '[{"Question": "Caf\xe9?", "Complex_CoT": "x", "Response": "y"}]'.encode("latin-1"),
     {}, r"latin1.json: not UTF-8 text: byte 0xe9 on line 1"),
    ("rows.jsonl", '{"Question": "a", "Complex_CoT": "b", "Response": "c"}\n{"Question": oops}\n', {},
     r"rows.jsonl: line 2: invalid JSON"),
    ("odd.json", '{"a": 1, "b": 2}', {}, r"odd.json: unrecognised JSON layout"),
    ("ragged.json", '{"Question": ["a", "b"], "Complex_CoT": ["c"], "Response": ["d", "e"]}', {},
     r"columns of different lengths \[1, 2\]"),
    ("rows.txt", "Question,Complex_CoT,Response\n", {}, r"rows.txt: unsupported file type '.txt'"),
    ("missing.csv", "Question,Response\nq,r\n", {}, r"missing.csv: key 'train_datasets.t.columns': missing required "
     r"column\(s\) \['Complex_CoT'\] \(columns: Question, Response;"),
    ("letters.json", json.dumps([{"Question": "q", "Complex_CoT": "c", "Response": "r", "options": ["x", "y"],
                                  "answer_idx": "Z"}]), {},
     r"letters.json: key 'answer_idx': row 0: answer_idx \"Z\" is not among its options \['A', 'B'\]"),
    ("two.json", json.dumps([{"Question": "q", "Complex_CoT": ["one", "two"], "Response": "r"}]), {},
     r"two.json: key 'Complex_CoT': row 0: column 'Complex_CoT' holds a list of 2 items"),
    ("mostly_empty.json", json.dumps([{"Question": "q", "Complex_CoT": "", "Response": "r"}] * 3 +
                                     [{"Question": "p", "Complex_CoT": "c", "Response": "r"}]), {},
     r"key 'Complex_CoT': 3 of 4 rows have an empty 'Complex_CoT': check the 'columns' mapping"),
    ("dupes.json", json.dumps([{"id": "x", "Question": "q", "Complex_CoT": "c", "Response": "r"},
                               {"id": "x", "Question": "p", "Complex_CoT": "c", "Response": "r"}]), {},
     r"dupes.json: key 'id': duplicated id 'x'"),
    ("s1.jsonl", '{"question": "q", "solution": "s"}\n', {"normalise": "s1"},
     r"normalise 's1' needs column\(s\) \['thinking_trajectories'\]"),
]


@pytest.mark.parametrize("name, content, entry, message", BAD, ids=[b[0] for b in BAD])
def test_bad_training_data_is_one_line(tmp_path, name, content, entry, message):
    with pytest.raises(MedS1Error, match=message) as err:
        load(write(tmp_path, name, content), **entry)
    assert "\n" not in str(err.value)


def test_a_folder_that_is_not_a_saved_dataset(tmp_path):
    (tmp_path / "folder").mkdir()
    with pytest.raises(MedS1Error, match="folder: folder is not a dataset saved with datasets.save_to_disk"):
        load(tmp_path / "folder")


def test_a_hub_dataset_that_cannot_be_reached_names_it():
    with pytest.raises(MedS1Error, match="config.json: key 'train_datasets.hub': cannot load 'no-org/no-such-set' "
                                         "from the hub .*set file_path"):
        load_train_dataset({"key": "hub", "hf_path": "no-org/no-such-set"})


def test_unknown_normaliser_is_refused_with_a_suggestion():
    with pytest.raises(MedS1Error, match="unknown normaliser 'nejm' .*did you mean 'nejmcr'"):
        normalise.check_name("nejm", file="config.json", key="train_datasets.x.normalise")


# ------------------------------------------------------------------------------------------------ through config.json
@pytest.fixture
def registry(tmp_path, tiny_model_dir):
    cfg = tiny_config(tiny_model_dir, sft_file=TEST_DATA / "curation_sft.json", eval_file=DEMO_EVAL)
    cfg["train_datasets"] |= {"columns-layout": {"file_path": str(TEST_DATA / "curation_columns.json")},
                              "s1-style": {"file_path": str(TEST_DATA / "curation_s1_style.jsonl"), "normalise": "s1"}}

    def experiment(data, n):
        return {"config": {"model_key": "tiny", "curation": {"method": "random", "n_samples": n},
                           "datasets": {"curate": data, "eval": "evalset"}}}
    cfg["curation"] = {"base_max_new_tokens": 4}
    results = {"experiments": {"cols": experiment("columns-layout", 2), "s1": experiment("s1-style", 2),
                               "many": experiment("sft", 50), "study": experiment("sft", 2)}}
    results["experiments"]["study"]["config"]["curation"]["method"] = "s1"
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    (tmp_path / "results.json").write_text(json.dumps(results))
    return load_registry({"cache_dir": str(tmp_path / "cache"), "curation_llm": "offline-rules"}, tmp_path)


@pytest.mark.parametrize("name", ["cols", "s1"])
def test_the_seeds_layouts_load_through_config_alone(registry, tmp_path, name):
    spec = registry.spec(name, "curate")
    out = tmp_path / name
    stats = curate(spec, dataset=str(out / "dataset"), rows=str(out / "rows.parquet"), stats=str(out / "stats.json"),
                   cost=str(out / "llm_cost.json"))
    assert stats["rows_in"] == 3 and stats["selected"] == stats["requested"] == 2
    rows = pd.read_parquet(out / "rows.parquet")
    assert not rows["Complex_CoT_original"].str.startswith("[").any()


def test_n_samples_above_the_rows_available_is_reported(registry, tmp_path, caplog):
    spec = registry.spec("many", "curate")
    with caplog.at_level("WARNING"):
        stats = curate(spec, dataset=str(tmp_path / "d"), rows=str(tmp_path / "r.parquet"),
                       stats=str(tmp_path / "s.json"), cost=str(tmp_path / "c.json"))
    assert stats["requested"] == 50 and stats["selected"] == 4 and stats["rows_read"] == 5
    assert stats["dropped_at_load"] == {"empty Complex_CoT": 1}
    assert "n_samples 50 is more than the 4 rows available" in caplog.text
    assert stats["trace_writer"] is None and stats["offline_stand_in"] is False and stats["llm"]["by_role"] == {}


def test_stats_say_who_answered_and_flag_the_offline_stand_in(registry, tmp_path, caplog):
    spec = registry.spec("study", "curate")
    with caplog.at_level("WARNING"):
        stats = curate(spec, dataset=str(tmp_path / "d"), rows=str(tmp_path / "r.parquet"),
                       stats=str(tmp_path / "s.json"), cost=str(tmp_path / "c.json"))
    offline = {"provider": "offline", "model": "offline-rules", "stand_in": True}
    assert stats["llm"]["by_role"] == {"base_judge": offline, "specialty_labeler": offline}
    assert stats["offline_stand_in"] is True and stats["trace_writer"] is None  # no trace was rewritten
    assert "base_judge, specialty_labeler answered by the offline stand-in rules" in caplog.text
    assert json.loads((tmp_path / "c.json").read_text())["by_role"] == stats["llm"]["by_role"]


def test_errors_while_curating_name_the_experiment(registry, tmp_path):
    spec = registry.spec("many", "curate")
    bad = tmp_path / "bad.json"
    shutil.copy(TEST_DATA / "curation_sft.json", bad)
    bad.write_text(bad.read_text().replace('"answer_idx": "B"', '"answer_idx": "Q"', 1))
    spec["dataset"]["file_path"] = str(bad)
    with pytest.raises(MedS1Error, match=r"bad.json: experiment 'many': key 'answer_idx': row \d: answer_idx \"Q\""):
        curate(spec, dataset=str(tmp_path / "d"), rows=str(tmp_path / "r.parquet"), stats=str(tmp_path / "s.json"),
               cost=str(tmp_path / "c.json"))
