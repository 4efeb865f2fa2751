"""``nejmcr-reason-purity`` and ``nejmcr-reason-style``: the nejmcr-reason ablation levels that add a clean-up call
(purity: remove case-report mentions; style: also add "Oh/Hmm/Wait" transitions). The one-call levels are table rows."""
from __future__ import annotations

from meds1.plugins import TRACE_TRANSFORMS
from meds1.traces.extract import ask, with_cot
from meds1.traces.prompts import stand_in
from meds1.traces.textrules import add_transitions, remove_case_report_mentions
from meds1.traces.transforms.table import REASON_FLAGS, offline_nejmcr_clean, reason_rule


def offline_clean_style(p: dict) -> str:
    lines = remove_case_report_mentions(p["cot"]).split("\n")
    content = [i for i, line in enumerate(lines) if line.strip()]
    for i, styled in zip(content, add_transitions([lines[i] for i in content])):
        lines[i] = styled
    return "\n".join(lines)


CLEANUP = {  # level -> (clean-up prompt, its offline stand-in)
    "purity": ("nejmcr-clean", stand_in(offline_nejmcr_clean, "case-report mentions removed by pattern")),
    "style": ("nejmcr-clean-style", stand_in(offline_clean_style, "case-report mentions removed; 'Hmm/Oh/Wait' "
                                                                  "transitions on every 2nd line")),
}


def _reason_then_clean(level: str):
    reasoning = stand_in(reason_rule(level), f"nejmcr-reason rule with {sorted(REASON_FLAGS[level])}")
    prompt, cleaning = CLEANUP[level]

    def extract(rows, client):
        reasoned = ask(client, f"nejmcr-reason-{level}", rows, offline=reasoning)
        cleaned = ask(client, prompt, with_cot(rows, reasoned), offline=cleaning)
        return [c if c is not None else r for c, r in zip(cleaned, reasoned)]
    extract.__doc__ = f"Two calls: nejmcr-reason-{level}, then the {prompt} clean-up."
    return extract


for _level in CLEANUP:
    TRACE_TRANSFORMS.register(f"nejmcr-reason-{_level}", needs={"llm"})(_reason_then_clean(_level))
