"""Dataset normalisers: turn a dataset's own layout into the canonical ``Question, Complex_CoT, Response`` columns.

Chosen by config, never by dataset name in code: a ``train_datasets`` entry says ``"normalise": "s1"`` (or
``"nejmcr"``), and ``columns`` (applied first) can rename its columns to the names a normaliser reads. A new
normaliser is one function and one row of ``NORMALISERS``.

- ``s1`` (the seed's ``s1-gemini-raw``, HF qfq/geminiall_nona): ``question`` -> Question, ``thinking_trajectories``
  -> Complex_CoT (its one-element list unwrapped), ``solution`` -> Response.
- ``nejmcr`` (the seed's NEJM case reports): Question = the ``presentation`` section + a fixed question asking for the
  diagnosis; Complex_CoT = the article body ``markdown``; Response = the first non-empty diagnosis field in the seed's
  priority order (``diagnosis_final``, ``diagnosis_clinical_and_final``, ... ``diagnosis_psychiatric``), else a
  "no diagnosis" placeholder. Rows over 8192 tokens (question + trace + response) under the base model's tokenizer
  (config.json ``model_choices.base``) are dropped and counted, as in the seed.
"""
from __future__ import annotations

from typing import Callable

from meds1.errors import MedS1Error

NEJMCR_QUESTION = "What is the most likely diagnosis for this patient?"  # the seed's wording is not recorded
NEJMCR_NO_DIAGNOSIS = "No diagnosis was given in the case report."
NEJMCR_DIAGNOSIS_PRIORITY = ("final", "clinical_and_final", "pathological", "anatomical", "diagnosis_and_management",
                             "diagnosis", "clinical", "laboratory", "psychiatric")
NEJMCR_MAX_TOKENS = 8192


def first_text(*values) -> str | None:
    for value in values:
        if value is not None and not (isinstance(value, float) and value != value) and str(value).strip():
            return str(value).strip()
    return None


def unwrap_single(value):
    """["trace"] -> "trace" (s1-gemini-raw stores each trajectory as a one-element list)."""
    if hasattr(value, "tolist") and not isinstance(value, str):
        value = value.tolist()
    return value[0] if isinstance(value, (list, tuple)) and len(value) == 1 else value


def normalise_s1(df, entry: dict, where: str, tokenizer_path: str | None):
    """qfq/geminiall_nona -> canonical columns (renames + unwrapping the one-element trajectory lists)."""
    need(df, ("question", "thinking_trajectories", "solution"), entry, where)
    out = df.rename(columns={"question": "Question", "thinking_trajectories": "Complex_CoT", "solution": "Response"})
    out["Complex_CoT"] = [unwrap_single(v) for v in out["Complex_CoT"]]
    return out, {}


def nejmcr_diagnosis(row: dict) -> str:
    fields = [row.get(f"diagnosis_{name}") if name != "diagnosis" else first_text(row.get("diagnosis_diagnosis"),
                                                                                  row.get("diagnosis"))
              for name in NEJMCR_DIAGNOSIS_PRIORITY]
    return first_text(*fields) or NEJMCR_NO_DIAGNOSIS


def normalise_nejmcr(df, entry: dict, where: str, tokenizer_path: str | None):
    """NEJM case reports -> canonical columns; rows over 8192 tokens under the base tokenizer dropped."""
    need(df, ("presentation", "markdown"), entry, where)
    rows = df.to_dict("records")
    out = df.assign(Question=[f"{first_text(r['presentation']) or ''}\n\n{NEJMCR_QUESTION}".strip() for r in rows],
                    Complex_CoT=[first_text(r["markdown"]) or "" for r in rows],
                    Response=[nejmcr_diagnosis(r) for r in rows])
    count = token_counter(tokenizer_path, entry, where)
    sizes = [count(q) + count(c) + count(r) for q, c, r in zip(out["Question"], out["Complex_CoT"], out["Response"])]
    keep = [n <= NEJMCR_MAX_TOKENS for n in sizes]
    dropped = len(keep) - sum(keep)
    return out[keep], ({f"over {NEJMCR_MAX_TOKENS} tokens": dropped} if dropped else {})


def token_counter(tokenizer_path: str | None, entry: dict, where: str) -> Callable[[str], int]:
    if not tokenizer_path:
        raise MedS1Error("normalise 'nejmcr' filters rows by token count under the base model's tokenizer: set "
                         "config.json model_choices.base", file=where,
                         key=f"train_datasets.{entry.get('key')}.normalise")
    from meds1.tokenizers import load_tokenizer

    tok = load_tokenizer(tokenizer_path, file=where, key="model_choices.base")
    return lambda text: len(tok(text, add_special_tokens=False)["input_ids"])


def need(df, columns: tuple[str, ...], entry: dict, where: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise MedS1Error(f"normalise '{entry.get('normalise')}' needs column(s) {missing} (columns: "
                         f"{', '.join(map(str, df.columns))}; rename them with 'columns')", file=where,
                         key=f"train_datasets.{entry.get('key')}.columns")


NORMALISERS: dict[str, Callable] = {"s1": normalise_s1, "nejmcr": normalise_nejmcr}


def check_name(name: str | None, **where) -> None:
    """Parse-time check of a dataset entry's ``normalise`` (one line with "did you mean")."""
    if name is not None and name not in NORMALISERS:
        raise MedS1Error(f"unknown normaliser '{name}' (known: {', '.join(NORMALISERS)})", choices=NORMALISERS,
                         value=name, **where)


def normalise(df, entry: dict, where: str, *, tokenizer_path: str | None = None):
    """(frame, {reason: rows dropped}) after the entry's normaliser; unchanged without one."""
    name = entry.get("normalise")
    if name is None:
        return df, {}
    check_name(name, file=where, key=f"train_datasets.{entry.get('key')}.normalise")
    return NORMALISERS[name](df, entry, where, tokenizer_path)
