"""Eval items from every supported source kind, their validation errors, subset selection, and prompt rendering."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from meds1.errors import MedS1Error
from meds1.data.eval_items import load_eval_items, select_items
from meds1.evaluate.prompts import build_prompt

EVAL_ITEMS = Path(__file__).parent / "data" / "eval_items.json"

MEDQA = {"question": "Which artery is occluded?", "options": {"A": "LAD", "B": "RCA", "C": "LCx", "D": "LM"},
         "answer_idx": "B", "answer": "RCA"}
PUBMED = {"question": "Does aspirin help?", "options": {"A": "yes", "B": "no", "C": "maybe"},
          "answer_idx": "A", "answer": "yes"}


def _write_json(path, obj):
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------------ source kinds
def test_huatuo_shape_json_groups_by_source_and_numbers_ids(tmp_path):
    path = _write_json(tmp_path / "eval.json", {"MedQA": [MEDQA, MEDQA], "PubMedQA": [PUBMED]})
    items = load_eval_items({"file_path": "eval.json"}, base_dir=tmp_path)
    assert [(i["id"], i["source"]) for i in items] == [("MedQA-0", "MedQA"), ("MedQA-1", "MedQA"),
                                                       ("PubMedQA-0", "PubMedQA")]
    assert items[0] == {"id": "MedQA-0", "source": "MedQA", "question": "Which artery is occluded?",
                        "options": MEDQA["options"], "answer_idx": "B", "answer": "RCA"}
    assert path.exists()


def test_the_projects_eval_file_loads_14_items_from_4_sources():
    items = load_eval_items({"file_path": str(EVAL_ITEMS)})
    assert len(items) == 14
    assert Counter(i["source"] for i in items) == {"MedQA_USLME_test": 4, "MedMCQA_validation": 4,
                                                   "PubMedQA_test": 3, "MMLU-Pro_Medical_test": 3}
    assert all(i["options"][i["answer_idx"]] == i["answer"] for i in items)
    assert len({i["id"] for i in items}) == 14 and len(items[-1]["options"]) == 10


def test_csv_with_option_columns(tmp_path):
    (tmp_path / "eval.csv").write_text(
        "qid,stem,opa,opb,opc,correct\n"
        "c1,\"Which vitamin, when lacking, causes night blindness?\",Vitamin A,Vitamin C,Vitamin D,A\n"
        "c2,Which cells make surfactant?,Type I pneumocytes,Type II pneumocytes,Macrophages,B\n", encoding="utf-8")
    entry = {"file_path": "eval.csv", "source": "csv-src",
             "columns": {"id": "qid", "question": "stem", "options": ["opa", "opb", "opc"], "answer_idx": "correct"}}
    items = load_eval_items(entry, base_dir=tmp_path)
    assert [(i["id"], i["answer"]) for i in items] == [("c1", "Vitamin A"), ("c2", "Type II pneumocytes")]
    assert items[0]["question"] == "Which vitamin, when lacking, causes night blindness?"


def test_the_columns_list_form_is_accepted_by_the_config_schema():
    from meds1.registry.validate import check

    entry = {"file_path": "eval.csv", "columns": {"question": "stem", "options": ["opa", "opb"]}}
    check(entry, "config", ref="eval_dataset", file="config.json")
    with pytest.raises(MedS1Error):
        check({**entry, "columns": {"options": []}}, "config", ref="eval_dataset", file="config.json")


def test_a_latin1_file_is_one_line_naming_file_byte_and_line(tmp_path):
    path = tmp_path / "eval.json"
    path.write_bytes(json.dumps({"MedQA": [MEDQA]}, indent=1).replace("LAD", "Caf\u00e9").encode("latin-1"))
    with pytest.raises(MedS1Error) as err:
        load_eval_items({"file_path": str(path)})
    assert str(err.value) == (f"{path}: not UTF-8 text: byte 0xe9 on line 6 (save the file as UTF-8, e.g. iconv "
                              "-f latin1 -t utf-8)")
    (tmp_path / "bom.json").write_bytes(b"\xef\xbb\xbf" + json.dumps([MEDQA]).encode())
    assert load_eval_items({"file_path": str(tmp_path / "bom.json")})[0]["answer"] == "RCA"  # a UTF-8 BOM is fine


def test_jsonl_flat_rows_with_given_ids_and_entry_source(tmp_path):
    rows = [{**MEDQA, "id": "q17"}, {**PUBMED, "id": 18}]
    (tmp_path / "eval.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    items = load_eval_items({"file_path": "eval.jsonl", "source": "mine"}, base_dir=tmp_path)
    assert [(i["id"], i["source"]) for i in items] == [("q17", "mine"), ("18", "mine")]


def test_parquet_with_option_structs_of_different_sizes(tmp_path):
    import pandas as pd

    five = {**MEDQA, "options": {**MEDQA["options"], "E": "PDA"}, "answer_idx": "E", "answer": "PDA"}
    pd.DataFrame([MEDQA, five]).to_parquet(tmp_path / "eval.parquet")
    items = load_eval_items({"file_path": str(tmp_path / "eval.parquet"), "key": "medqa"})
    # parquet stores one struct type with every key; the 4-option row must not gain an "E": None option
    assert [sorted(i["options"]) for i in items] == [list("ABCD"), list("ABCDE")]
    assert [i["answer"] for i in items] == ["RCA", "PDA"]
    assert items[0]["source"] == "medqa"


def test_saved_dataset_folder_and_dataset_dict_split(tmp_path):
    import datasets

    datasets.Dataset.from_list([MEDQA, PUBMED]).save_to_disk(str(tmp_path / "flat"))
    datasets.DatasetDict({"test": datasets.Dataset.from_list([PUBMED])}).save_to_disk(str(tmp_path / "dd"))
    flat = load_eval_items({"file_path": str(tmp_path / "flat"), "source": "S"})
    assert [i["answer_idx"] for i in flat] == ["B", "A"]
    assert load_eval_items({"file_path": str(tmp_path / "dd"), "hf_split": "test"})[0]["answer"] == "yes"
    with pytest.raises(MedS1Error, match="no split 'validation'"):
        load_eval_items({"file_path": str(tmp_path / "dd"), "hf_split": "validation"})


def test_hf_path_load_dataset_with_column_mapping_and_option_lists(tmp_path):
    folder = tmp_path / "medmcqa"
    folder.mkdir()
    rows = [{"qid": "m1", "q": "Vitamin for night blindness?", "opa": "A", "opb": "B1", "opc": "C", "opd": "D",
             "cop": 0},
            {"qid": "m2", "q": "Drug for toxic optic neuropathy?", "opa": "INH", "opb": "Ethambutol",
             "opc": "Rifampicin", "opd": "PZA", "cop": 1}]
    (folder / "validation.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    entry = {"hf_path": "medmcqa", "hf_config": None, "hf_split": "validation", "source": "MedMCQA",
             "columns": {"id": "qid", "question": "q", "options": ["opa", "opb", "opc", "opd"], "answer_idx": "cop"}}
    items = load_eval_items(entry, base_dir=tmp_path)  # a local folder: real datasets.load_dataset, offline
    assert [(i["id"], i["answer_idx"], i["answer"]) for i in items] == [("m1", "A", "A"), ("m2", "B", "Ethambutol")]
    assert items[1]["options"] == {"A": "INH", "B": "Ethambutol", "C": "Rifampicin", "D": "PZA"}
    assert {i["source"] for i in items} == {"MedMCQA"}


def test_gpqa_options_are_shuffled_with_a_per_item_seed(tmp_path):
    rows = [{"Question": f"Q{n}?", "Correct Answer": f"right{n}", "Incorrect Answer 1": f"w1-{n}",
             "Incorrect Answer 2": f"w2-{n}", "Incorrect Answer 3": f"w3-{n}"} for n in range(12)]
    _write_json(tmp_path / "gpqa.json", rows)
    entry = {"file_path": str(tmp_path / "gpqa.json"), "source": "GPQA", "columns": {"question": "Question"},
             "options_from": ["Correct Answer", "Incorrect Answer 1", "Incorrect Answer 2", "Incorrect Answer 3"]}
    first, again, other_seed = (load_eval_items(entry, seed=s) for s in (0, 0, 1))
    assert first == again
    assert all(i["answer"] == f"right{n}" and i["options"][i["answer_idx"]] == f"right{n}"
               for n, i in enumerate(first))
    assert len({i["answer_idx"] for i in first}) > 1  # not always "A"
    assert [i["options"] for i in first] != [i["options"] for i in other_seed]


# ------------------------------------------------------------------------------------------------------ errors
@pytest.mark.parametrize("content, needle", [
    ([], "no items"),
    ({"MedQA": [MEDQA, {**MEDQA, "question": None}]}, "source 'MedQA' row 1: the question is blank"),
    ({"MedQA": [MEDQA, {**MEDQA, "question": "  \n "}]}, "source 'MedQA' row 1: the question is blank"),
    ({"MedQA": [{k: v for k, v in MEDQA.items() if k != "question"}]},
     "row 0: missing required column 'question' (columns: options, answer_idx, answer)"),
    ({"MedQA": 5}, "expected {source: [items]} or a list of items"),
    ({"MedQA": [5]}, "source 'MedQA' row 0: expected an object, got int"),
    ({"MedQA": [{**MEDQA, "options": 5}]}, "'options' must be a mapping or a list, got int"),
    ({"MedQA": [{k: v for k, v in MEDQA.items() if k != "options"}]}, "row 0: missing required column 'options'"),
    ({"MedQA": [{**MEDQA, "answer_idx": "F"}]}, "answer_idx 'F' is not among options A, B, C, D"),
    ([{**MEDQA, "id": "x", "source": "a"}, {**MEDQA, "id": "x", "source": "b"}],
     "source 'b' row 0: duplicated id 'x' (first seen in source 'a' row 0)"),
])
def test_bad_eval_data_is_one_line_naming_file_source_and_row(tmp_path, content, needle):
    path = _write_json(tmp_path / "bad.json", content)
    with pytest.raises(MedS1Error) as err:
        load_eval_items({"file_path": str(path)})
    assert needle in str(err.value) and str(path) in str(err.value) and "\n" not in str(err.value)


def test_missing_file_and_missing_mapped_column(tmp_path):
    with pytest.raises(MedS1Error, match="eval dataset file not found"):
        load_eval_items({"file_path": "nope.json"}, base_dir=tmp_path)
    path = _write_json(tmp_path / "e.json", [MEDQA])
    with pytest.raises(MedS1Error, match="missing column\\(s\\) 'stem' for 'question'"):
        load_eval_items({"file_path": str(path), "columns": {"question": "stem"}})


# --------------------------------------------------------------------------------------------------- selection
def _items(per_source=10):
    return [{"id": f"{s}-{n}", "source": s} for s in ("a", "b") for n in range(per_source)]


def test_eval_sample_is_a_seeded_subset_per_source_in_file_order():
    items = _items()
    picked = select_items(items, eval_sample=3, seed=7)
    assert Counter(i["source"] for i in picked) == {"a": 3, "b": 3}
    assert picked == select_items(items, eval_sample=3, seed=7)
    assert picked == sorted(picked, key=items.index)
    assert {i["id"] for i in picked} != {i["id"] for i in select_items(items, eval_sample=3, seed=8)}


def test_limit_takes_first_n_per_source_after_exclusions():
    picked = select_items(_items(), limit=2, exclude_ids={"a-0"})
    assert [i["id"] for i in picked] == ["a-1", "a-2", "b-0", "b-1"]
    assert len(select_items(_items(), eval_sample=50)) == 20


# ----------------------------------------------------------------------------------------------------- prompts
@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from meds1.tokenizers import load_tokenizer

    return load_tokenizer(tiny_model_dir, padding_side="left")


ITEM = {"id": "q", "source": "s", "question": "Which artery?", "options": {"A": "LAD", "B": "RCA"},
        "answer_idx": "B", "answer": "RCA"}


def test_prompt_ends_with_the_generation_prompt_and_lists_options(tokenizer):
    text = build_prompt(ITEM, tokenizer, prompting=None, system_prompt=None)
    assert text.endswith("<|im_end|>\n<|im_start|>assistant\n")
    assert text.startswith("<|im_start|>user\nPlease answer the following multiple-choice question.\n")
    assert "Which artery?\nA. LAD\nB. RCA<|im_end|>" in text


def test_prompt_variants_system_prompt_and_template_override(tokenizer):
    step = build_prompt(ITEM, tokenizer, prompting="step", system_prompt="You are a doctor.")
    assert step.startswith("<|im_start|>system\nYou are a doctor.<|im_end|>\n<|im_start|>user\n")
    assert "B. RCA\nLet's think step by step.<|im_end|>" in step
    assert "end your response with 'The answer is X'" in build_prompt(ITEM, tokenizer, prompting="strict",
                                                                       system_prompt=None)
    custom = ("{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}"
              "{% if add_generation_prompt %}[assistant] {% endif %}")
    assert build_prompt(ITEM, tokenizer, prompting=None, system_prompt=None, chat_template=custom).endswith(
        "B. RCA\n[assistant] ")
    with pytest.raises(MedS1Error, match="unknown prompting style 'stpe'.*did you mean 'step'"):
        build_prompt(ITEM, tokenizer, prompting="stpe", system_prompt=None)
