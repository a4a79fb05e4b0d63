"""How many llama.cpp threads, on this machine, alone and beside other work?

Child processes load the embedded SmolLM2 through mmreact's load path with different thread
counts (generation / prompt reading) and time a 200-token prompt and 32 greedy tokens, first on
an otherwise idle machine, then with ``--busy N`` other processes spinning on the CPU (what an
expert running beside the LLM, a second chat or any other program does). Printed: tokens per
second for each setting, and each setting's share of the best one in the same condition.

    python tools/bench_threads.py                  # 1/all and all/all threads, idle and with 1 busy process
    python tools/bench_threads.py --settings 1/1,1/2,2/2 --busy 1 --repeats 3

mmreact's default (``mmreact.llms.llama_cpu.decode_threads`` / ``batch_threads``) is half the cores for
generation and every core for the prompt; this script is where that choice comes from.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def child(decode: int, batch: int) -> dict[str, float]:
    from llama_cpp import Llama

    from mmreact.llms import llama_cpu as native
    from mmreact.llms.gguf import default_model_path

    with native.model_params(native.extra_bufts().enabled):
        llm = Llama(model_path=str(default_model_path()), n_ctx=1024, n_threads=decode, n_threads_batch=batch,
                    verbose=False)
    from bench_extra_bufts import time_model

    return time_model(llm, prompt_tokens=200, new_tokens=32)


def measure(setting: str) -> dict[str, float]:
    decode, batch = setting.split("/")
    done = subprocess.run([sys.executable, __file__, "--child", decode, batch], capture_output=True, text=True,
                          timeout=600)
    if done.returncode:
        raise RuntimeError(done.stderr[-400:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settings", default=None, help="comma-separated generation/prompt thread counts")
    parser.add_argument("--busy", type=int, default=1, help="spinning processes for the busy condition")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return
    from mmreact.llms import llama_cpu as native

    n = min(native.cores(), 8)
    default = f"{native.decode_threads()}/{native.batch_threads(native.decode_threads())}"
    settings = (args.settings or ",".join(dict.fromkeys([default, f"{n}/{n}", f"1/{n}"]))).split(",")
    print(f"{native.cores()} cores; mmreact's default here: {default} (generation/prompt threads)")
    for busy in (0, args.busy):
        spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
        try:
            time.sleep(0.5 if busy else 0)
            runs: dict[str, list[dict[str, float]]] = {s: [] for s in settings}
            for _ in range(args.repeats):
                for s in settings:
                    runs[s].append(measure(s))
        finally:
            for p in spinners:
                p.kill()
        med = {s: {k: statistics.median(r[k] for r in v) for k in ("prompt", "decode")} for s, v in runs.items()}
        best = {k: max(m[k] for m in med.values()) for k in ("prompt", "decode")}
        print(f"-- {'idle' if not busy else f'{busy} busy process(es)'}")
        for s, m in med.items():
            print(f"   {s:6} prompt {m['prompt']:6.0f} tok/s ({m['prompt'] / best['prompt']:4.0%})   "
                  f"decode {m['decode']:5.0f} tok/s ({m['decode'] / best['decode']:4.0%})"
                  + ("   <- default" if s == default else ""))


if __name__ == "__main__":
    main()
