"""Test-time scaling follows s1/m1 step by step: think-marker prefill, end of thinking on a stop TOKEN with a minimum
length on continuations, "Wait" insertions, caps on the thinking budget, the forced answer marker ("Final Answer:"
when the budget ran out). Scripted token streams go through the real vLLM backend code (a fake ``vllm`` module that
applies vLLM's stopping rules); the same algorithm then runs on a tiny model trained on the format, through hf."""
from __future__ import annotations


import pytest

from eval_models import Recorder
from meds1.errors import MedS1Error
from meds1.evaluate.backends import BackendContext, GenerationParams, make_backend
from meds1.evaluate.tts import (RANDOM_CUES, ApproachContext, Question, choose_cue, markers_for, parse_approach,
                                run_approach)

PROMPT = "<|im_start|>user\nWhich artery?<|im_end|>\n<|im_start|>assistant\n"


def scripted(thoughts: list[str], answer: str, *, stop_after_thought: str):
    """An engine: the k-th thinking call writes thoughts[k] then the stop; after the answer marker, the answer."""
    def engine(llm, prompt_ids, params):
        tok = llm.tokenizer
        text = tok.decode(prompt_ids, skip_special_tokens=False)
        if text.rstrip().endswith(("answer", "Final Answer:", "## Final Response")):
            return tok(answer, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        k = text.count("Wait")  # cues inserted so far (every cue starts with "Wait")
        thought = thoughts[min(k, len(thoughts) - 1)]
        return tok(thought + stop_after_thought, add_special_tokens=False)["input_ids"]
    return engine


def run(vllm, model_dir, approach, *, fmt="qwen", max_new_tokens=40, answer_max_tokens=8, engine=None):
    vllm.ENGINE = engine
    backend = Recorder(make_backend("vllm", str(model_dir), context=BackendContext(model={"key": "tiny"})))
    tok = backend.tokenizer
    ctx = ApproachContext(backend, GenerationParams(max_new_tokens=max_new_tokens), markers_for(fmt, tok),
                          answer_max_tokens=answer_max_tokens)
    question = Question(tuple(tok(PROMPT, add_special_tokens=False)["input_ids"]), seed=3, key="q1")
    return run_approach(approach, ctx, [question])[0], backend.calls, tok, question


def ids(tok, text):
    return tuple(tok(text, add_special_tokens=False)["input_ids"])


THOUGHTS = ["First, ST elevation in II, III, aVF.\n", " So inferior wall.\n", " Hence the RCA.\n", " Sure.\n"]


def test_reasoning_2x_is_s1_thinking_n_ignore(vllm, tiny_model_dir):
    answer, calls, tok, q = run(vllm, tiny_model_dir, "reasoning_2x", max_new_tokens=80,
                                engine=scripted(THOUGHTS, "\nAnswer: B", stop_after_thought="<|im_start|>"))
    im_start = tok.convert_tokens_to_ids("<|im_start|>")
    opened = q.ids + ids(tok, "<|im_start|>think\n")                        # 1. the think-marker prefill
    (r0, p0, g0), (r1, p1, g1), (r2, p2, g2), (ra, pa, ga) = calls
    assert r0[0].prompt_ids == opened and p0.stop_token_ids == (im_start,) and p0.min_tokens == 0
    assert g0[0].finish_reason == "stop" and g0[0].stopped_by == im_start  # 2. end of thinking = the stop token
    first = opened + g0[0].token_ids                                        # the stop token is dropped ...
    assert r1[0].prompt_ids == first + ids(tok, "Wait")                     # ... and "Wait" appended (s1)
    assert p1.min_tokens == 1 and p1.stop_strings == ()                     # 3. at least one token, token stops only
    spent = len(g0[0].token_ids) + len(ids(tok, "Wait"))
    assert r1[0].max_new_tokens == 80 - spent                               # 4. the total stays under the budget
    assert r2[0].prompt_ids == r1[0].prompt_ids + g1[0].token_ids + ids(tok, "Wait")
    assert len(calls) == 4                                                  # 2 ignores, then the answer
    assert ra[0].prompt_ids == r2[0].prompt_ids + g2[0].token_ids + ids(tok, "<|im_start|>answer")  # 5. forced
    assert ra[0].max_new_tokens == 8
    assert answer.output == ("<|im_start|>think\n" + THOUGHTS[0] + "Wait" + THOUGHTS[1] + "Wait" + THOUGHTS[2]
                             + "<|im_start|>answer" + "\nAnswer: B")
    thinking = sum(len(g[0].token_ids) for g in (g0, g1, g2)) + 2 * len(ids(tok, "Wait"))
    assert answer.n_reasoning_tokens == thinking
    assert answer.n_output_tokens == sum(g[0].n_output_tokens for g in (g0, g1, g2, ga))


def test_budget_cut_forces_final_answer(vllm, tiny_model_dir):
    long_thought = "step " * 30
    answer, calls, tok, q = run(vllm, tiny_model_dir, "budget_6",
                                engine=scripted([long_thought], " B", stop_after_thought="<|im_start|>"))
    (r0, p0, g0), (ra, _, _) = calls
    assert r0[0].max_new_tokens == 6 and g0[0].finish_reason == "length" and len(g0[0].token_ids) == 6
    forced = "\n<|im_start|>answer\nFinal Answer:"                           # a newline first: the text had none
    assert ra[0].prompt_ids == r0[0].prompt_ids + g0[0].token_ids + ids(tok, forced)
    assert answer.output == "<|im_start|>think\n" + tok.decode(g0[0].token_ids) + forced + " B"
    assert answer.n_reasoning_tokens == 6


def test_waits_stop_at_the_budget(vllm, tiny_model_dir):
    """m1's keep-thinking-below-budget: no cue once the thinking has reached the budget."""
    from transformers import AutoTokenizer

    thought, tok = "abc def.\n", AutoTokenizer.from_pretrained(tiny_model_dir)
    per_thought, wait = len(ids(tok, thought)), len(ids(tok, "Wait"))
    budget = 2 * per_thought + wait + 1                                     # room for two thoughts and one cue
    answer, calls, tok, q = run(vllm, tiny_model_dir, f"budget_{budget}_4x",
                                engine=scripted([thought], " B", stop_after_thought="<|im_start|>"))
    thinking_calls = calls[:-1]
    assert [c[0][0].max_new_tokens for c in thinking_calls] == [budget, budget - per_thought - wait]
    assert answer.output.count("Wait") == 1 and answer.n_reasoning_tokens == 2 * per_thought + wait


def test_random_cues_are_the_seeds_and_seeded(vllm, tiny_model_dir):
    assert {choose_cue(f"q{n}", 0, 0) for n in range(40)} == set(RANDOM_CUES)
    assert choose_cue("q1", 1, 3) == choose_cue("q1", 1, 3)
    answer, calls, tok, q = run(vllm, tiny_model_dir, "reasoning_2x_random",
                                engine=scripted(THOUGHTS, " B", stop_after_thought="<|im_start|>"))
    cues = [choose_cue("q1", k, 3) for k in range(2)]
    assert calls[1][0][0].prompt_ids[-len(ids(tok, cues[0])):] == ids(tok, cues[0])
    assert all(c in answer.output for c in cues)


def test_immediate_prefills_think_statement_and_answer_marker(vllm, tiny_model_dir):
    answer, calls, tok, q = run(vllm, tiny_model_dir, "immediate",
                                engine=scripted(THOUGHTS, "\nAnswer: B", stop_after_thought="<|im_start|>"))
    prefill = "<|im_start|>think\nI already know the answer.\n<|im_start|>answer"
    assert len(calls) == 1 and calls[0][0][0].prompt_ids == q.ids + ids(tok, prefill)
    assert answer.output == prefill + "\nAnswer: B" and answer.n_reasoning_tokens == 0


def test_huatuo_markers_stop_on_the_marker_text(vllm, tiny_model_dir):
    """'## Final Response' is several tokens: thinking stops on the string; the separator is completed."""
    answer, calls, tok, q = run(vllm, tiny_model_dir, "reasoning", fmt="huatuo",
                                engine=scripted(["Inferior leads."], "\n\nThe answer is B.",
                                                stop_after_thought="\n\n## Final Response\n\nThe answer is"))
    (r0, p0, g0), (ra, _, _) = calls
    assert r0[0].prompt_ids == q.ids + ids(tok, "## Thinking\n\n")
    assert p0.stop_strings == ("## Final Response",) and p0.stop_token_ids == ()
    assert g0[0].stopped_by == "## Final Response" and "Final" not in g0[0].text
    assert answer.output.startswith("## Thinking\n\nInferior leads.")
    assert answer.output.count("## Final Response") == 1 and answer.output.endswith("The answer is B.")
    assert "\n\n## Final Response" in answer.output


@pytest.mark.parametrize("name, parsed", [
    ("reasoning", ("reasoning", None, 0)), ("reasoning_3x", ("reasoning_Nx", None, 3)),
    ("reasoning_2x_random", ("reasoning_Nx_random", None, 2)), ("budget_512", ("budget_T", 512, 0)),
    ("budget_2048_4x", ("budget_T_Nx", 2048, 4)), ("default", ("default", None, 0)),
])
def test_approach_names(name, parsed):
    assert parse_approach(name) == parsed
    with pytest.raises(MedS1Error, match="unknown reasoning approach 'reasoning_2y'"):
        parse_approach("reasoning_2y")
