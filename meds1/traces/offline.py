"""Deterministic, rule-based answers for every trace task, registered in ``OFFLINE_TASKS`` for the offline provider.

They keep the whole pipeline runnable without a model (tests, CI, the CPU demo) and change the trace's *structure*
the way the real transform would (steps, bullets, Q/A pairs, note sections, ...). They cannot add medical knowledge:
where a real model would (evidence, depth, a wrong-but-plausible answer) the rule says so in its text or meta.
Each answer carries ``meta["offline_rule"]`` describing what the rule did.
"""
from __future__ import annotations

import functools
import math
import re
from typing import Callable

from meds1.llm.base import OFFLINE_TASKS, LLMRequest
from meds1.traces.steps import (
    Step,
    drop_filler,
    is_step_format,
    parse_steps,
    render_steps,
    short_title,
    split_paragraphs,
    split_sentences,
)

_STOPWORDS = frozenset(
    "about above after again against being below between could doing during further having their there these those "
    "through under until where which while would should might other shall because since still whose patient "
    "patients this that with from into what when have been were they them then than also just some more most "
    "very".split()
)
_NEGATION = re.compile(r"\b(?:not|no|unlikely|rules? out|ruled out|instead|however|although|alternative|rather)\b",
                       re.IGNORECASE)
_CASE_REPORT_PHRASES = (
    (r"\b(?:the|this) case report (?:mentions|notes|states|says|describes|reports|shows|suggests|indicates) "
     r"that\s+", ""),
    (r"\b(?:according to|as (?:noted|described|mentioned|reported) in|in|from) (?:the|this) case report,?\s*", ""),
    (r"\b(?:the|this) case report\b", "the case"),
)
_SPECIALISTS = (  # (keyword stems, speaker) for the socratic dialogue; first match over the trace wins
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
_TRANSITIONS = ("Hmm, ", "Oh, ", "Wait, ")
REASON_FLAGS = {  # cumulative requirements of the nejmcr-reason ablation levels
    "extraction": {"extraction"},
    "structure": {"extraction", "structure"},
    "depth": {"extraction", "structure", "depth"},
    "purity": {"extraction", "structure", "depth", "purity"},
    "style": {"extraction", "structure", "depth", "purity", "style"},
}


def offline_rule(task: str, rule: str) -> Callable:
    """Register ``fn(payload) -> text | (text, rule)`` as the offline answer for ``task``."""
    def deco(fn: Callable[[dict], "str | tuple[str, str]"]):
        @functools.wraps(fn)
        def answer(request: LLMRequest):
            out = fn(request.payload)
            text, used = out if isinstance(out, tuple) else (out, rule)
            return text, {"offline_rule": used}
        OFFLINE_TASKS.register(task)(answer)
        return fn
    return deco


# ---------------------------------------------------------------------------------------------- shared rules

def units(cot: str) -> list[tuple[str | None, str]]:
    """The trace's pieces as (title, text): its steps, else its paragraphs, else groups of ~3 lines/sentences."""
    if is_step_format(cot):
        return [(s.title or None, s.body) for s in parse_steps(cot)]
    sections = headed_paragraphs(cot)
    if len(sections) >= 2:
        return sections
    lines = [re.sub(r"^\s*(?:[-*\u2022]|\d+[.)]|[QA]:)\s*", "", line) for line in cot.splitlines() if line.strip()]
    sentences = lines if len(lines) >= 2 else split_sentences(cot)  # a list's lines are its sentences
    if len(sentences) < 2:
        return [(None, cot.strip())] if cot.strip() else []
    n_groups = min(len(sentences), max(2, math.ceil(len(sentences) / 3)))
    size = math.ceil(len(sentences) / n_groups)
    return [(None, " ".join(sentences[i:i + size])) for i in range(0, len(sentences), size)]


def headed_paragraphs(cot: str) -> list[tuple[str | None, str]]:
    """Paragraphs as (title, text); a markdown heading ("## Plan") becomes the title of the text under it."""
    out: list[tuple[str | None, str]] = []
    pending: str | None = None
    for paragraph in split_paragraphs(cot):
        head = re.match(r"^#{1,6}[ \t]*(.+?)[ \t#]*(?:\n|$)", paragraph)
        title, text = (head.group(1), paragraph[head.end():].strip()) if head else (None, paragraph)
        if head and not text:
            pending = title  # a heading alone in its paragraph titles the next one
            continue
        out.append((title or pending, text))
        pending = None
    return out


def key_sentence(text: str) -> str:
    """The statement carrying most content (long words, numbers), earliest on ties, without spoken fillers."""
    cores = [drop_filler(s) for s in split_sentences(text)]
    candidates = [c for c in cores if len(c.split()) >= 6 and not c.endswith("?")]
    if not candidates:
        return cores[0] if cores else ""
    weight = [len(content_words(c)) + 2 * bool(re.search(r"\d", c)) for c in candidates]
    return candidates[max(range(len(candidates)), key=lambda i: (weight[i], -i))]


def titled_units(cot: str) -> list[tuple[str, str]]:
    return [(title or short_title(key_sentence(text)) or "Reasoning", text) for title, text in units(cot)]


def statements(text: str, min_words: int = 5) -> list[str]:
    cores = (drop_filler(s) for s in split_sentences(text))
    return [c for c in cores if len(c.split()) >= min_words and not c.endswith("?")]


def questions_in(text: str) -> list[str]:
    return [drop_filler(s) for s in split_sentences(text) if s.rstrip().endswith("?")]


def content_words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z][a-z\-]{4,}", text.lower()) if w not in _STOPWORDS}


def lower_first(text: str) -> str:
    return text[:1].lower() + text[1:] if text[1:2].islower() else text


def clause(sentence: str) -> str:
    return sentence.rstrip(" .!?;:")


def remove_case_report_mentions(text: str) -> str:
    for pattern, replacement in _CASE_REPORT_PHRASES:
        text = re.sub(pattern, replacement, text, flags=re.IGNORECASE)
    return re.sub(r"(^|[.!?]\s+|\n)([a-z])", lambda m: m.group(1) + m.group(2).upper(), text)


def add_transitions(lines: list[str]) -> list[str]:
    """Spoken transitions on every second line ("Hmm, ", "Oh, ", "Wait, " in turn)."""
    out = []
    for i, line in enumerate(lines):
        if i % 2 == 1:
            line = _TRANSITIONS[(i // 2) % len(_TRANSITIONS)] + lower_first(drop_filler(line))
        out.append(line)
    return out


# ---------------------------------------------------------------------------------------------- trace formats

@offline_rule("extract:step", "one '## Step N' per paragraph (or sentence group), titled by its key sentence")
def offline_step(p: dict) -> str:
    return render_steps([Step(title, text) for title, text in titled_units(p["cot"])])


@offline_rule("extract:1-sentence", "key clauses of the first, middle and last paragraphs joined into one sentence")
def offline_one_sentence(p: dict) -> str:
    pieces = units(p["cot"])
    picks = sorted({0, len(pieces) // 2, len(pieces) - 1}) if pieces else []
    clauses = [clause(key_sentence(pieces[i][1])).replace(". ", "; ") for i in picks]
    clauses = [c if i == 0 else lower_first(c) for i, c in enumerate(clauses) if c]
    words = "; ".join(clauses).split()[:80]
    return clause(" ".join(words)) + "."


@offline_rule("extract:list", "one bullet per statement sentence")
def offline_list(p: dict) -> str:
    bullets = [s for _, text in units(p["cot"]) for s in statements(text)]
    return "\n".join(f"- {b}" for b in bullets or [p["cot"].strip()])


@offline_rule("extract:markdown", "a '##' heading per paragraph with its sentences as a bullet list")
def offline_markdown(p: dict) -> str:
    blocks = []
    for title, text in titled_units(p["cot"]):
        bullets = "\n".join(f"- {s}" for s in statements(text, 1))
        blocks.append(f"## {title}\n\n{bullets}")
    return "\n\n".join(blocks)


@offline_rule("extract:step-evidence", "steps, each with the case sentence sharing most words as its evidence")
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


@offline_rule("extract:decision-tree", "consecutive key sentences chained as indented 'If ... -> ...' lines")
def offline_decision_tree(p: dict) -> str:
    keys = [clause(key_sentence(text)) for _, text in units(p["cot"])]
    keys = [k for k in keys if k]
    if len(keys) < 2:
        keys = [clause(split_sentences(p["question"])[-1] if p["question"] else "the findings are reviewed")] + keys
    lines = [f"{'  ' * min(i, 4)}If {lower_first(keys[i])} -> {lower_first(keys[i + 1])}" for i in range(len(keys) - 1)]
    lines.append(f"{'  ' * min(len(keys) - 1, 4)}-> Decision: {keys[-1]}")
    return "\n".join(lines)


@offline_rule("extract:qa", "a Q/A pair per paragraph: its own question (or one about its topic) and its statements")
def offline_qa(p: dict) -> str:
    return "\n".join(f"Q: {q}\nA: {a}" for q, a in qa_pairs(p["cot"]))


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


@offline_rule("extract:socratic", "Q/A pairs as a dialogue: an attending asks, the specialist the case needs answers")
def offline_socratic(p: dict) -> str:
    text = f"{p['question']} {p['cot']}".lower()
    expert = next((name for stems, name in _SPECIALISTS if any(s in text for s in stems)), "Internist")
    lines = []
    for question, answer in qa_pairs(p["cot"]):
        lines += [f"Attending: {question}", f"{expert}: {answer}"]
    return "\n".join(lines)


@offline_rule("extract:cot", "template: the question's findings one per line, then the known answer (no reasoning)")
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


# ---------------------------------------------------------------------------------------------- clinical notes

@offline_rule("extract:note-select", "keyword heuristic: handover -> ISBAR, treatment+response -> SOAPIE, "
                                     "several problems -> POMR, else SOAP")
def offline_note_select(p: dict) -> str:
    text = f"{p['question']} {p['cot']}".lower()
    if re.search(r"\b(?:handover|hand-off|handoff|escalat|on call|sbar)\b", text):
        return "ISBAR"
    treated = re.search(r"\b(?:administered|was given|was started|after treatment)\b", text)
    if treated and re.search(r"\brespon|improv", text):
        return "SOAPIE"
    if len(re.findall(r"\b(?:problem|comorbid|also has|another issue)\b", text)) >= 3:
        return "POMR"
    return "SOAP"


@offline_rule("extract:note", "each sentence placed in the note section whose keywords it matches best")
def offline_note(p: dict) -> str:
    from meds1.traces.extract import note_formats  # lazy: extract imports this module

    spec = note_formats()[p["note_format"]]
    placed: dict[str, list[str]] = {name: [] for name in spec["sections"]}
    for sentence in (s for _, text in units(p["cot"]) for s in statements(text, 4)):
        placed[_best_section(sentence, spec)].append(sentence)
    blocks = []
    for name, sentences in placed.items():
        bullets = "\n".join(f"- {s}" for s in sentences) or "- Not documented in the reasoning."
        blocks.append(f"## {name}\n{bullets}")
    return "\n\n".join(blocks)


def _best_section(sentence: str, spec: dict) -> str:
    lowered = sentence.lower()
    scores = {name: sum(k in lowered for k in section["keywords"]) for name, section in spec["sections"].items()}
    best = max(scores, key=scores.get)
    return best if scores[best] else spec["default"]


# ---------------------------------------------------------------------------------------------- the nejmcr family

@offline_rule("extract:nejmcr-transform", "one sentence per line; headings, figure/table and doctor mentions removed")
def offline_nejmcr_transform(p: dict) -> str:
    lines = []
    for _, text in units(p["cot"]):
        for sentence in split_sentences(re.sub(r"(?m)^#+.*$", "", text)):
            if re.search(r"\b(?:figure|fig\.|table)\s*\d", sentence, re.I):
                continue
            lines.append(re.sub(r"\bDr\.?\s+[A-Z][a-z]+", "the clinician", sentence))
    return "\n".join(lines)


@offline_rule("extract:nejmcr-qa", "question without answer choices + the correct answer's text")
def offline_nejmcr_qa(p: dict) -> str:
    question = re.sub(r"(?m)^[ \t]*\(?[A-J][.):][ \t]+.*$\n?", "", p["question"]).strip()
    answer = p.get("answer_text") or key_sentence(p["answer"]) or p["answer"].strip()
    return f"Question: {' '.join(question.split())}\nAnswer: {answer}"


def reason(p: dict, flags: set[str]) -> str:
    """Rule version of nejmcr-reason: keep relevant sentences, then apply the requested layout and clean-ups."""
    target = content_words(f"{p['question']} {p['answer']}")
    sentences = [s for _, text in units(p["cot"]) for s in split_sentences(text)]
    kept = [s for s in sentences if content_words(s) & target or ("depth" in flags and _NEGATION.search(s))]
    kept = kept or sentences
    if "purity" in flags:
        kept = [remove_case_report_mentions(s) for s in kept]
    if "style" in flags:
        kept = add_transitions(kept)
    return "\n".join(kept) if "structure" in flags else " ".join(kept)


@offline_rule("extract:nejmcr-reason", "sentences sharing words with question/answer (or weighing alternatives), "
                                       "one per line, case-report mentions removed")
def offline_nejmcr_reason(p: dict) -> str:
    return reason(p, REASON_FLAGS["purity"])


def _register_reason_level(level: str) -> None:
    flags = REASON_FLAGS[level]
    rule = f"nejmcr-reason rule with {sorted(flags)}"
    offline_rule(f"extract:nejmcr-reason-{level}", rule)(lambda p: reason(p, flags))


for _level in REASON_FLAGS:
    _register_reason_level(_level)


@offline_rule("extract:nejmcr-clean", "case-report mentions removed by pattern")
def offline_nejmcr_clean(p: dict) -> str:
    return remove_case_report_mentions(p["cot"])


@offline_rule("extract:nejmcr-clean-style", "case-report mentions removed; 'Hmm/Oh/Wait' transitions on every 2nd line")
def offline_nejmcr_clean_style(p: dict) -> str:
    lines = remove_case_report_mentions(p["cot"]).split("\n")
    content = [i for i, line in enumerate(lines) if line.strip()]
    for i, styled in zip(content, add_transitions([lines[i] for i in content])):
        lines[i] = styled
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- perturbations, restore

@offline_rule("perturb:collapse_consecutive", "titles joined; the key sentence of each merged step kept")
def offline_collapse(p: dict) -> str:
    titles = [s["title"] for s in p["steps"] if s["title"]]
    title = " and ".join([titles[0]] + [lower_first(t) for t in titles[1:]]) if titles else "Combined reasoning"
    body = " ".join(key_sentence(s["body"]) for s in p["steps"]).split()
    return f"## Step: {title}\n\n{' '.join(body[:max(8, p['max_words'] - 1)])}"


@offline_rule("perturb:answer", "templated wrong conclusion naming the requested wrong option")
def offline_wrong_answer(p: dict):
    wrong, text = p.get("wrong_letter"), p.get("wrong_text")
    if not wrong:
        step = "Looking again, the conclusion above does not hold; a different explanation fits these findings better."
        return (f"STEP: {step}\nRESPONSE: [offline fallback] The conclusion above is not supported; another diagnosis "
                f"is more likely.", "no answer options: generic wrong conclusion (clearly marked fallback)")
    step = (f"Weighing everything once more, {text} explains this presentation better than the alternatives; "
            f"the findings that seemed to point elsewhere are less specific than they first looked, "
            f"so option {wrong} it is.")
    response = f"Taking the whole presentation into account, the best answer is {text}. The answer is {wrong}."
    return f"STEP: {step}\nRESPONSE: {response}"


@offline_rule("restore", "steps kept in order, a lone long step split into sentence groups, a summary step appended")
def offline_restore(p: dict) -> str:
    pieces = titled_units(p["cot"])
    if len(pieces) == 1:
        pieces = [(short_title(key_sentence(t)) or "Reasoning", t) for _, t in units(" ".join(pieces[0][1].split()))]
    steps = [Step(title, text) for title, text in pieces]
    if steps:
        recap = "; ".join(lower_first(s.title) for s in steps)
        steps.append(Step("Summary of the reasoning", f"Putting the steps together: {recap}."))
    return render_steps(steps)
