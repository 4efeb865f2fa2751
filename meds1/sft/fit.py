"""Make every example fit ``max_length`` before trl sees it, by cutting the REASONING, never the question or answer.

trl truncates from the right (losing the answer) and silently drops examples whose prompt fills ``max_length``.
Here an example that is too long gets its reasoning trace (the ``Complex_CoT`` text inside the rendered completion)
cut from the right until prompt + reasoning + answer fit; one that cannot fit even with no reasoning is dropped and
counted. Lengths are measured exactly as trl tokenizes: the chat template over prompt + completion.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from datasets import Dataset


KEPT_COLUMNS = ("id", "prompt", "completion")  # what the trainer needs; the rest stays in the curated files


@dataclass
class FitReport:
    kept: int = 0
    truncated: int = 0
    dropped_too_long: int = 0
    dropped_ids: list[str] = field(default_factory=list)
    truncated_ids: list[str] = field(default_factory=list)


def token_length(tokenizer, prompt: list[dict], completion: list[dict]) -> int:
    return len(tokenizer.apply_chat_template(prompt + completion, tokenize=True, return_dict=True)["input_ids"])


def fit_split(split: Dataset, tokenizer, max_length: int) -> tuple[Dataset, FitReport]:
    """``split`` with too-long examples' reasoning truncated and unfittable ones removed, plus what was done."""
    report, rows = FitReport(), []
    for index, row in enumerate(split):
        row_id = str(row.get("id", index))
        if token_length(tokenizer, row["prompt"], row["completion"]) > max_length:
            fitted = _truncate_reasoning(row, tokenizer, max_length)
            if fitted is None:
                report.dropped_too_long += 1
                report.dropped_ids.append(row_id)
                continue
            row = fitted
            report.truncated += 1
            report.truncated_ids.append(row_id)
        rows.append({"id": row_id, "prompt": row["prompt"], "completion": row["completion"]})
    report.kept = len(rows)
    if not rows:  # an empty split stays an empty dataset with the split's own features
        return (split.select([]) if len(split) else split).select_columns(
            [c for c in split.column_names if c in KEPT_COLUMNS]), report
    return Dataset.from_list(rows), report


def _truncate_reasoning(row: dict, tokenizer, max_length: int) -> dict | None:
    """The row with the longest reasoning prefix that fits.

    None when the reasoning cannot be found in the reply, or when even no reasoning at all is too long.
    """
    reply = row["completion"][0]["content"]
    cot = (row.get("Complex_CoT") or "").strip()
    start = reply.find(cot) if cot else -1
    if start < 0:
        return None
    before, after = reply[:start], reply[start + len(cot):]
    token_ends = _token_end_offsets(tokenizer, cot)

    def with_reasoning(n_tokens: int) -> dict:
        kept = cot[:token_ends[n_tokens - 1]].rstrip() if n_tokens else ""
        completion = [{**row["completion"][0], "content": before + kept + after}]
        return {**row, "completion": completion}

    lo, hi = 0, len(token_ends)  # invariant: the answer lies in [lo, hi); hi (all of it) is known too long
    if token_length(tokenizer, row["prompt"], with_reasoning(0)["completion"]) > max_length:
        return None
    while hi - lo > 1:  # binary search for the most reasoning tokens that still fit
        mid = (lo + hi) // 2
        if token_length(tokenizer, row["prompt"], with_reasoning(mid)["completion"]) <= max_length:
            lo = mid
        else:
            hi = mid
    return with_reasoning(lo)


def _token_end_offsets(tokenizer, text: str) -> list[int]:
    """Character offset where each token of ``text`` ends: cutting there keeps the original text exactly."""
    try:
        encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    except NotImplementedError:  # a slow (Python) tokenizer has no offsets: measure decoded prefixes instead
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        return [len(tokenizer.decode(ids[: i + 1]).rstrip("\ufffd")) for i in range(len(ids))]
    ends, last = [], 0
    for _, end in encoded["offset_mapping"]:
        last = max(last, end)  # byte-fallback pieces of one character share offsets; keep them monotonic
        ends.append(last)
    return ends
