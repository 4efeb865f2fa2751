"""One helper per job: a model's tokenizer (meds1.tokenizers) and comparing answer words (meds1.text), used by every
stage; no module loads a tokenizer or normalises answer words its own way."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from meds1.errors import MedS1Error
from meds1.text import normalise_words
from meds1.tokenizers import load_tokenizer, read_chat_template

PACKAGE = Path(__file__).resolve().parents[1] / "meds1"
TEMPLATE = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"


def test_the_entry_template_inline_or_from_a_file_replaces_the_tokenizers_own(tiny_model_dir, tmp_path):
    (tmp_path / "t.jinja").write_text(TEMPLATE, encoding="utf-8")
    for value in (TEMPLATE, str(tmp_path / "t.jinja")):
        tok = load_tokenizer({"key": "tiny", "chat_template": value}, tiny_model_dir)
        assert tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False) == "[user] hi\n"
    assert "<|im_start|>" in load_tokenizer({"key": "tiny"}, tiny_model_dir).chat_template
    assert read_chat_template("t.jinja", base_dir=tmp_path) == TEMPLATE


def test_an_object_template_is_documentation_with_one_notice(tiny_model_dir, capsys):
    layout = {"system": "detailed thinking {thinking}"}
    tok = load_tokenizer({"key": "nemo", "chat_template": layout}, tiny_model_dir)
    assert "<|im_start|>" in tok.chat_template
    assert read_chat_template(layout, key="models.nemo.chat_template") is None
    assert capsys.readouterr().err.count("models.nemo.chat_template is an object (documentation only)") == 1


def test_generation_pads_left_and_a_tokenizer_without_pad_pads_with_eos(tiny_model_dir):
    tok = load_tokenizer(str(tiny_model_dir), padding_side="left")
    assert tok.padding_side == "left" and tok.pad_token is not None


@pytest.mark.parametrize("entry, path, match", [
    ({"key": "tiny", "chat_template": "no/such/template.jinja"}, None, "key 'models.tiny.chat_template'"),
    ({"key": "gone"}, "no/such/model/folder", "key 'models.gone': cannot load the tokenizer 'no/such/model/folder'"),
])
def test_bad_templates_and_folders_are_one_line(tiny_model_dir, entry, path, match):
    with pytest.raises(MedS1Error, match=match) as err:
        load_tokenizer(entry, path or tiny_model_dir)
    assert "\n" not in str(err.value)


def test_a_template_is_required_where_asked(tmp_path, tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tok.chat_template = None
    tok.save_pretrained(tmp_path / "bare")
    (tmp_path / "bare" / "chat_template.jinja").unlink(missing_ok=True)
    assert load_tokenizer({"key": "bare"}, tmp_path / "bare").chat_template is None
    with pytest.raises(MedS1Error, match="models.bare.chat_template.*no chat template"):
        load_tokenizer({"key": "bare"}, tmp_path / "bare", require_template=True)


def test_words_are_compared_case_and_punctuation_blind_keeping_every_script():
    assert normalise_words("Parvovirus-B19.") == normalise_words("parvovirus  b19") == "parvovirus b19"
    assert normalise_words("α-thalassemia") != normalise_words("β-thalassemia")
    assert normalise_words(None) == "" and normalise_words("  ") == ""


@pytest.mark.parametrize("text", ["Let's   see.\nOK", "we've got a β-blocker_x (2.5 mg)!", "…and — so", "\t\n", "None"])
def test_the_word_normaliser_is_the_seed_n_gram_rule_exactly(text):
    seed = " ".join(re.sub(r"[^\w\s]", " ", str(text).lower()).split())  # the seed's n-gram preprocessing
    assert normalise_words(text) == seed


def _calls(name: str) -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr == "from_pretrained" and \
                    isinstance(node.value, ast.Name) and node.value.id == name:
                found.append(str(path.relative_to(PACKAGE.parent)))
    return found


def test_only_the_helper_loads_a_tokenizer():
    # meds1/models.py reads a GGUF file once to build a model folder: materialising, not loading a model's tokenizer
    assert sorted(set(_calls("AutoTokenizer"))) == ["meds1/models.py", "meds1/tokenizers.py"]
