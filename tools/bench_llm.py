"""Benchmark mmreact's two local LLM backends on CPU with the embedded default model: the llama.cpp
backend (``default``, what mmreact uses) against mmreact's transformers backend (``hf:``) running
the same GGUF (``AutoModelForCausalLM.from_pretrained(dir, gguf_file=...)``).

What this compares, and what it does not: the figures compare MMREACT'S TWO BACKENDS, not
llama.cpp with transformers used well. mmreact's transformers backend (``mmreact/llms/hf.py``,
as of this script) keeps no KV cache from one ``generate`` call to the next and makes two passes
per constrained ReAct step (decision, then thought), so it processes the whole prompt twice per
step, while the llama.cpp backend keeps the evaluated prompt prefix between calls. The "prompt
tokens/s" and "decode tokens/s" rows call each library directly (transformers' ``generate``
with its own KV cache within one call), so they compare the libraries; the "ReAct step" and
"end-to-end" rows measure mmreact's backends as shipped.

    python tools/bench_llm.py                 # both backends, every measurement
    python tools/bench_llm.py --steps 3       # fewer ReAct steps per backend

Measured per backend, in one run, each backend in fresh processes of its own (torch's and
llama.cpp's thread pools in one process would slow each other), printed side by side with ratios:
  cold load       import of the backend library + model load, in a fresh process
  prompt tok/s    prompt processing of a ~400-token prompt
  decode tok/s    greedy generation of 48 tokens
  ReAct step      one grammar-constrained step (decision pass + reply), system prompt with every
                  built-in tool, a new question each time (the shared prefix stays cached)
  end-to-end      "What is the total on this receipt?" on a rendered receipt with the real OCR
                  expert, in a fresh process: every import and model load included (target < 10 s
                  on 2 cores for llama.cpp)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

START = time.perf_counter()
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

QUESTIONS = ["What is the total on this receipt?", "What animal is this?", "How many people are in the photo?",
             "What colour is the car?", "What does the sign say?", "Is there a dog?", "Describe the image."]


def _spec(backend: str) -> str:
    from mmreact.llms.gguf import default_model_path

    return "default" if backend == "llama.cpp" else f"hf:{default_model_path()}"


# -- run inside a fresh process --------------------------------------------------------------
def child_load(backend: str) -> dict[str, float]:
    t0 = time.perf_counter()
    from mmreact.llms import load_llm

    llm = load_llm(_spec(backend))
    if backend == "llama.cpp":
        import llama_cpp  # noqa: F401

        t1 = time.perf_counter()
        llm.llama  # noqa: B018 - loads the model
    else:
        import torch  # noqa: F401
        import transformers  # noqa: F401

        t1 = time.perf_counter()
        llm.model  # noqa: B018
    t2 = time.perf_counter()
    return {"import": t1 - t0, "load": t2 - t1}


def child_e2e(backend: str) -> dict[str, object]:
    from fixtures import render_receipt

    from mmreact import Agent
    from mmreact.llms import load_llm

    agent = Agent(load_llm(_spec(backend)), tools=["ocr"])
    result = agent.run("What is the total on this receipt?", render_receipt().image)
    steps = result.trace.steps
    return {"seconds": time.perf_counter() - START, "answer": result.answer, "status": result.status,
            "llm": sum(s.llm_seconds for s in steps), "tools": sum(s.tool_seconds or 0 for s in steps),
            "steps": [s.llm_text for s in steps]}


def in_child(kind: str, backend: str, *extra: str) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, f"--child-{kind}", backend, *extra], capture_output=True,
                          text=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"}, check=False)
    wall = time.perf_counter() - t0
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode or not lines:
        raise SystemExit(f"{kind} {backend} failed:\n{proc.stderr[-3000:]}")
    return {**json.loads(lines[-1]), "process_wall": wall}


# -- throughput and steps, in this process ---------------------------------------------------
def throughput(backend: str) -> dict[str, float]:
    from mmreact.llms import load_llm

    llm = load_llm(_spec(backend))
    text = "The quick brown fox jumps over the lazy dog. " * 40
    n_new = 48
    if backend == "llama.cpp":
        llama = llm.llama
        tokens = llama.tokenize(text.encode())
        prompt_s = float("inf")
        for _ in range(2):  # the first evaluation in a process warms up: best of two
            llama.reset()
            t0 = time.perf_counter()
            llama.eval(tokens)
            prompt_s = min(prompt_s, time.perf_counter() - t0)
        no_eos = {llama.token_eos(): -1e9}
        llama.create_completion(tokens, max_tokens=1, temperature=0.0)  # the prompt stays cached
        t0 = time.perf_counter()
        out = llama.create_completion(tokens, max_tokens=n_new, temperature=0.0, logit_bias=no_eos)
        decode_s = time.perf_counter() - t0
        n = out["usage"]["completion_tokens"]
        llama.reset()
        n_prompt = len(tokens)
    else:
        import torch

        model, tok = llm.model, llm.tokenizer
        ids = tok(text, return_tensors="pt").input_ids
        n_prompt = ids.shape[1]
        with torch.inference_mode():
            prompt_s = float("inf")
            for _ in range(2):  # best of two, as for llama.cpp
                t0 = time.perf_counter()
                model(ids)
                prompt_s = min(prompt_s, time.perf_counter() - t0)
            t0 = time.perf_counter()
            out = model.generate(ids, max_new_tokens=n_new, min_new_tokens=n_new, do_sample=False,
                                 pad_token_id=tok.eos_token_id)
            total = time.perf_counter() - t0
        n = out.shape[1] - n_prompt
        decode_s = total - prompt_s
    return {"prompt_tok_s": n_prompt / prompt_s, "decode_tok_s": n / decode_s, "prompt_tokens": n_prompt}


def steps(backend: str, count: int) -> dict[str, float]:
    from mmreact.llms import load_llm
    from mmreact.llms.base import LLMRequest, Message
    from mmreact.prompts import system_prompt
    from mmreact.registry import resolve_tools

    llm = load_llm(_spec(backend))
    tools = resolve_tools(None)  # every built-in, for the listing only: nothing runs
    system = system_prompt(tools)

    def request(q: str) -> LLMRequest:
        question = Message("user", f"Images: image_1 (640x480)\nQuestion: {q}")
        return LLMRequest(messages=(Message("system", system), question), tools=tuple(tools), handles=("image_1",),
                          kind="react")

    t0 = time.perf_counter()
    llm.complete(request("Warm up: what is this?"))  # first step: prompt prefix + constraint set-up
    first = time.perf_counter() - t0
    times, tokens, replies = [], 0, []
    for q in (QUESTIONS * 3)[:count]:
        t0 = time.perf_counter()
        out = llm.complete(request(q))
        times.append(time.perf_counter() - t0)
        tokens += out.completion_tokens or 0
        replies.append(out.text.replace("\n", " | "))
    return {"first_step_s": first, "step_s": sum(times) / len(times), "step_tokens": tokens / len(times),
            "replies": replies}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=7, help="ReAct steps timed per backend")
    parser.add_argument("--only", choices=["llama.cpp", "transformers"], help="run one backend")
    parser.add_argument("--child-load", dest="child_load")
    parser.add_argument("--child-e2e", dest="child_e2e")
    parser.add_argument("--child-measure", dest="child_measure")
    args = parser.parse_args()
    if args.child_load:
        print(json.dumps(child_load(args.child_load)))
        return
    if args.child_measure:
        print(json.dumps({"tp": throughput(args.child_measure), "steps": steps(args.child_measure, args.steps)}))
        return
    if args.child_e2e:
        print(json.dumps(child_e2e(args.child_e2e)))
        return

    backends = [args.only] if args.only else ["llama.cpp", "transformers"]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"CPU cores available: {cores}; load average now: {os.getloadavg()[0]:.2f}")
    results: dict[str, dict] = {}
    for b in backends:
        r: dict = {}
        r["load"] = in_child("load", b)
        print(f"[{b}] cold load: import {r['load']['import']:.2f} s + load {r['load']['load']:.2f} s", flush=True)
        r.update(in_child("measure", b, "--steps", str(args.steps)))
        print(f"[{b}] prompt {r['tp']['prompt_tok_s']:.0f} tok/s, decode {r['tp']['decode_tok_s']:.1f} tok/s",
              flush=True)
        print(f"[{b}] first step {r['steps']['first_step_s']:.2f} s, then {r['steps']['step_s']:.3f} s/step "
              f"({r['steps']['step_tokens']:.0f} tokens/step)", flush=True)
        for reply in r["steps"]["replies"][:3]:
            print(f"    {reply[:110]}")
        r["e2e"] = in_child("e2e", b)
        print(f"[{b}] end-to-end {r['e2e']['seconds']:.2f} s in-process ({r['e2e']['process_wall']:.2f} s with "
              f"interpreter start; LLM {r['e2e']['llm']:.2f} s, OCR {r['e2e']['tools']:.2f} s): "
              f"{r['e2e']['answer']!r}", flush=True)
        results[b] = r

    rows = [
        ("cold load: import + load (s)", lambda r: r["load"]["import"] + r["load"]["load"], True),
        ("model load alone (s)", lambda r: r["load"]["load"], True),
        ("prompt tokens/s", lambda r: r["tp"]["prompt_tok_s"], False),
        ("decode tokens/s", lambda r: r["tp"]["decode_tok_s"], False),
        ("first ReAct step (s)", lambda r: r["steps"]["first_step_s"], True),
        ("ReAct step (s)", lambda r: r["steps"]["step_s"], True),
        ("end-to-end receipt question (s)", lambda r: r["e2e"]["seconds"], True),
    ]
    print()
    print("mmreact's two backends (llama.cpp; transformers without a KV cache between calls, prompt processed "
          "twice per ReAct step); the token/s rows call each library directly.")
    if len(results) == 2:
        print(f"{'metric':34} {'llama.cpp':>11} {'hf backend':>13}   ratio (llama.cpp better by)")
        a, b = results["llama.cpp"], results["transformers"]
        for label, get, lower_better in rows:
            x, y = get(a), get(b)
            ratio = y / x if lower_better else x / y
            print(f"{label:34} {x:11.3f} {y:13.3f}   {ratio:6.1f}x")
    else:
        (name, r), = results.items()
        for label, get, _ in rows:
            print(f"{label:34} {get(r):11.3f}  ({name})")
    e2e = results.get("llama.cpp", {}).get("e2e")
    if e2e:
        print(f"\nend-to-end target (< 10 s, llama.cpp, every load included): {e2e['seconds']:.2f} s -> "
              f"{'met' if e2e['seconds'] < 10 else 'NOT met'}; answer {e2e['answer']!r}")


if __name__ == "__main__":
    main()
