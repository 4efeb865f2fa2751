"""The table of one-call trace transforms: each row is a prompt template, where the LLM's answer starts, how it is
cleaned, and the offline stand-in, written right above its row.

A new style of trace is a prompt file in ``meds1/resources/prompts/`` plus one row here (and its stand-in)::

    row("haiku", prompt="haiku", rule=lambda p: p["cot"][:80], describe="the first 80 characters")

or, from a module outside the package (docs/extending.md), the same call with the template's text as ``prompt``.

Transforms that need several calls per row are modules of their own in this package (note, cot-step, ...).
"""
from __future__ import annotations

import re

from meds1.plugins import TRACE_TRANSFORMS
from meds1.traces.extract import STEP_ONE, PromptTransform
from meds1.traces.prompts import Rule, add_prompt
from meds1.traces.steps import Step, normalise_steps, render_steps, split_sentences
from meds1.traces.textrules import (
    NEGATION,
    add_transitions,
    clause,
    content_words,
    key_sentence,
    lower_first,
    questions_in,
    remove_case_report_mentions,
    statements,
    titled_units,
    units,
)


def row(name: str, *, prompt: str, rule: Rule, describe: str, anchor: str | None = None, post=None,
        needs_cot: bool = True, makes_steps: bool = False, **extra) -> PromptTransform:
    """Register one table row. ``prompt``: a template name under resources/prompts/, or the template's text (it has
    ``{placeholders}``; it becomes template ``name``). ``extra`` goes to the plug-in (``default_for_steps``: the
    transform a perturbation adds when the extract chain does not end in steps)."""
    inline = "{" in prompt
    prompt = add_prompt(name, prompt) if inline else prompt
    transform = PromptTransform(prompt, rule, describe, anchor, post, needs_cot)
    where = "its own prompt" if inline else f"prompts/{prompt}.txt"
    TRACE_TRANSFORMS.add(name, transform, needs={"llm", "makes_steps"} if makes_steps else {"llm"},
                         doc=f"one call with {where}; offline: {describe}", **extra)
    return transform


# ---------------------------------------------------------------------------------------------- step

def offline_step(p: dict) -> str:
    return render_steps([Step(title, text) for title, text in titled_units(p["cot"])])


STEP = row("step", prompt="step", anchor=STEP_ONE, post=normalise_steps, makes_steps=True, default_for_steps=True,
           rule=offline_step, describe="one '## Step N' per paragraph (or sentence group), titled by its key sentence")


# ---------------------------------------------------------------------------------------------- 1-sentence

def offline_one_sentence(p: dict) -> str:
    pieces = units(p["cot"])
    picks = sorted({0, len(pieces) // 2, len(pieces) - 1}) if pieces else []
    clauses = [clause(key_sentence(pieces[i][1])).replace(". ", "; ") for i in picks]
    clauses = [c if i == 0 else lower_first(c) for i, c in enumerate(clauses) if c]
    words = "; ".join(clauses).split()[:80]
    return clause(" ".join(words)) + "."


def one_sentence(text: str) -> str:
    """The seed's post-processing: one line, at most 700 characters, a final period."""
    sentence = " ".join(text.split()).strip('"')
    if len(sentence) > 700:
        sentence = sentence[:697].rstrip() + "..."
    return sentence if sentence.endswith((".", "!", "?")) else sentence + "."


row("1-sentence", prompt="1-sentence", post=one_sentence, rule=offline_one_sentence,
    describe="key clauses of the first, middle and last paragraphs joined into one sentence")


# ---------------------------------------------------------------------------------------------- list

def offline_list(p: dict) -> str:
    bullets = [s for _, text in units(p["cot"]) for s in statements(text)]
    return "\n".join(f"- {b}" for b in bullets or [p["cot"].strip()])


def as_bullets(text: str) -> str:
    lines = [re.sub(r"^(?:[-*\u2022]|\d+[.)])\s*", "", line.strip()) for line in text.splitlines()]
    return "\n".join(f"- {line}" for line in lines if line)


row("list", prompt="list", anchor=r"^[ \t]*(?:[-*\u2022]|\d+[.)])[ \t]", post=as_bullets, rule=offline_list,
    describe="one bullet per statement sentence")


# ---------------------------------------------------------------------------------------------- markdown

def offline_markdown(p: dict) -> str:
    blocks = []
    for title, text in titled_units(p["cot"]):
        bullets = "\n".join(f"- {s}" for s in statements(text, 1))
        blocks.append(f"## {title}\n\n{bullets}")
    return "\n\n".join(blocks)


row("markdown", prompt="markdown", rule=offline_markdown,
    describe="a '##' heading per paragraph with its sentences as a bullet list")


# ---------------------------------------------------------------------------------------------- step-evidence

def offline_step_evidence(p: dict) -> str:
    case = split_sentences(p["question"])
    steps = []
    for title, text in titled_units(p["cot"]):
        words = content_words(text)
        best = max(case, key=lambda s: len(words & content_words(s)), default="")
        if best and words & content_words(best):
            evidence = f'Case finding: "{best}"'
        else:
            evidence = "No case finding matches this step; it rests on general clinical knowledge (offline rule)."
        steps.append(Step(title, f"{text}\n\n**Evidence:** {evidence}"))
    return render_steps(steps)


def normalise_evidence(text: str) -> str:
    text = re.sub(r"(?im)^[ \t]*(?:#+[ \t]*)?\**[ \t]*evidence[ \t]*:?[ \t]*\**[ \t]*:?[ \t]*", "**Evidence:** ", text)
    return normalise_steps(text)


row("step-evidence", prompt="step-evidence", anchor=STEP_ONE, post=normalise_evidence, makes_steps=True,
    rule=offline_step_evidence, describe="steps, each with the case sentence sharing most words as its evidence")


# ---------------------------------------------------------------------------------------------- decision-tree

def offline_decision_tree(p: dict) -> str:
    keys = [clause(key_sentence(text)) for _, text in units(p["cot"])]
    keys = [k for k in keys if k]
    if len(keys) < 2:
        keys = [clause(split_sentences(p["question"])[-1] if p["question"] else "the findings are reviewed")] + keys
    lines = [f"{'  ' * min(i, 4)}If {lower_first(keys[i])} -> {lower_first(keys[i + 1])}" for i in range(len(keys) - 1)]
    lines.append(f"{'  ' * min(len(keys) - 1, 4)}-> Decision: {keys[-1]}")
    return "\n".join(lines)


def normalise_arrows(text: str) -> str:
    text = re.sub(r"(?m)^([ \t]*)-+>[ \t]*", r"\1-> ", text)   # keep the indentation that encodes depth
    return re.sub(r"(?<=\S)[ \t]*-+>[ \t]*", " -> ", text)


row("decision-tree", prompt="decision-tree", anchor=r"^[^\n]*-+>", post=normalise_arrows, rule=offline_decision_tree,
    describe="consecutive key sentences chained as indented 'If ... -> ...' lines")


# ---------------------------------------------------------------------------------------------- qa, socratic

def qa_pairs(cot: str) -> list[tuple[str, str]]:
    pairs = []
    for _, text in units(cot):
        key, asked = key_sentence(text), questions_in(text)
        if not key:
            continue
        if asked:
            pairs.append((asked[0], " ".join(statements(text, 3)[:3]) or key))
        else:
            rest = [s for s in statements(text, 3) if s != key][:3]
            pairs.append((f"What follows from the fact that {lower_first(clause(key))}?", " ".join(rest) or key))
    return pairs


def offline_qa(p: dict) -> str:
    return "\n".join(f"Q: {q}\nA: {a}" for q, a in qa_pairs(p["cot"]))


def normalise_qa(text: str) -> str:
    return re.sub(r"(?m)^[ \t]*\**[ \t]*(Q|A)[ \t]*\d*[ \t]*[:.][ \t]*\**[ \t]*", r"\1: ", text)


row("qa", prompt="qa", anchor=r"^[ \t]*\**[ \t]*Q[ \t]*\d*[ \t]*[:.]", post=normalise_qa, rule=offline_qa,
    describe="a Q/A pair per paragraph: its own question (or one about its topic) and its statements")

SPECIALISTS = (  # (keyword stems, speaker) for the offline dialogue; first match over the trace wins
    (("heart", "cardi", "coronary", "pericard", "myocard", "ecg"), "Cardiologist"),
    (("anemia", "hemoglobin", "platelet", "reticulocyte", "leuk", "bleed"), "Hematologist"),
    (("infect", "bacteri", "viral", "virus", "antibiotic", "fever"), "Infectious disease specialist"),
    (("neuro", "seizure", "stroke", "nerve", "brain"), "Neurologist"),
    (("lung", "pulmon", "breath", "pneum", "asthma"), "Pulmonologist"),
    (("kidney", "renal", "creatinine", "urine"), "Nephrologist"),
    (("liver", "hepat", "bowel", "stomach", "gastr", "pancrea"), "Gastroenterologist"),
    (("thyroid", "insulin", "diabet", "hormone", "adrenal"), "Endocrinologist"),
    (("pregnan", "uter", "ovar", "obstet"), "Obstetrician"),
    (("child", "infant", "newborn", "pediatr"), "Pediatrician"),
    (("tumor", "cancer", "malignan", "carcinoma", "lymphoma"), "Oncologist"),
    (("skin", "rash", "derma", "lesion"), "Dermatologist"),
    (("depress", "psych", "anxiety", "halluc"), "Psychiatrist"),
)


def offline_socratic(p: dict) -> str:
    text = f"{p['question']} {p['cot']}".lower()
    expert = next((name for stems, name in SPECIALISTS if any(s in text for s in stems)), "Internist")
    lines = []
    for question, answer in qa_pairs(p["cot"]):
        lines += [f"Attending: {question}", f"{expert}: {answer}"]
    return "\n".join(lines)


row("socratic", prompt="socratic", post=lambda t: re.sub(r"(?m)^\*\*([^*\n:]+):\*\*", r"\1:", t),
    rule=offline_socratic, describe="Q/A pairs as a dialogue: an attending asks, the specialist the case needs answers")


# ---------------------------------------------------------------------------------------------- cot (synthesised)

def offline_cot(p: dict) -> str:
    findings = statements(p["question"], 3)
    asked = questions_in(p["question"])
    answer = key_sentence(p["answer"]) or p.get("answer_text") or p["answer"].strip()
    lines = ["Let me go through what the question tells me."]
    lines += add_transitions([f"The case says: {lower_first(clause(f))}." for f in findings])
    if asked:
        lines.append(f"The question is: {asked[-1]}")
    lines += [f"Putting these findings together, the answer that fits is this: {answer}",
              "Yes, that is consistent with everything above."]
    return "\n".join(lines)


COT = row("cot", prompt="cot", needs_cot=False, rule=offline_cot,  # built from question + answer only
          describe="template: the question's findings one per line, then the known answer (no reasoning)")


# ---------------------------------------------------------------------------------------------- the nejmcr family

def offline_nejmcr_transform(p: dict) -> str:
    lines = []
    for _, text in units(p["cot"]):
        for sentence in split_sentences(re.sub(r"(?m)^#+.*$", "", text)):
            if re.search(r"\b(?:figure|fig\.|table)\s*\d", sentence, re.I):
                continue
            lines.append(re.sub(r"\bDr\.?\s+[A-Z][a-z]+", "the clinician", sentence))
    return "\n".join(lines)


row("nejmcr-transform", prompt="nejmcr-transform", rule=offline_nejmcr_transform,
    describe="one sentence per line; headings, figure/table and doctor mentions removed")

# cumulative requirements of the nejmcr-reason ablation levels (purity and style add a clean-up call: modules)
REASON_FLAGS = {
    "extraction": {"extraction"},
    "structure": {"extraction", "structure"},
    "depth": {"extraction", "structure", "depth"},
    "purity": {"extraction", "structure", "depth", "purity"},
    "style": {"extraction", "structure", "depth", "purity", "style"},
}


def reason(p: dict, flags: set[str]) -> str:
    """Rule version of nejmcr-reason: keep relevant sentences, then apply the requested layout and clean-ups."""
    target = content_words(f"{p['question']} {p['answer']}")
    sentences = [s for _, text in units(p["cot"]) for s in split_sentences(text)]
    kept = [s for s in sentences if content_words(s) & target or ("depth" in flags and NEGATION.search(s))]
    kept = kept or sentences
    if "purity" in flags:
        kept = [remove_case_report_mentions(s) for s in kept]
    if "style" in flags:
        kept = add_transitions(kept)
    return "\n".join(kept) if "structure" in flags else " ".join(kept)


def reason_rule(level: str) -> Rule:
    return lambda p: reason(p, REASON_FLAGS[level])


row("nejmcr-reason", prompt="nejmcr-reason", rule=reason_rule("purity"),
    describe="sentences sharing words with question/answer (or weighing alternatives), one per line, "
             "case-report mentions removed")
for _level in ("extraction", "structure", "depth"):
    row(f"nejmcr-reason-{_level}", prompt=f"nejmcr-reason-{_level}", rule=reason_rule(_level),
        describe=f"nejmcr-reason rule with {sorted(REASON_FLAGS[_level])}")


def offline_nejmcr_clean(p: dict) -> str:
    return remove_case_report_mentions(p["cot"])


row("nejmcr-clean", prompt="nejmcr-clean", rule=offline_nejmcr_clean, describe="case-report mentions removed by pattern")
