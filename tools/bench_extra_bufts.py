"""What does turning llama.cpp's extra buffer types off cost? (mmreact turns them off on AMX CPUs.)

For each GGUF file, child processes load the model through mmreact's own load path
(``mmreact.llms.llama_cpu.llama``) with ``use_extra_bufts`` on and off, alternating, and time prompt
processing (400 tokens) and greedy decoding (48 tokens). Printed: median tokens per second for
each setting and the ratio off / on, measured in the same run.

    python tools/bench_extra_bufts.py                  # the shipped SmolLM2 Q4_1, and a Q4_0 copy of it
    python tools/bench_extra_bufts.py --repeats 5 --gguf other.gguf

The Q4_0 copy is made here with llama.cpp's own quantizer (``llama_model_quantize``) from the
shipped file: llama.cpp's x86 REPACK buffer type covers Q4_0 (and IQ4_NL, Q4_K...), not Q4_1, so
the two files show both cases. On a CPU with AMX the "on" setting is the crash mmreact avoids:
it is skipped unless ``--force``.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def child(path: str, enabled: bool) -> dict[str, float]:
    from mmreact.llms import llama_cpu as native

    llm = native.llama(path, 1024, native.decode_threads(), decision=native.ExtraBufts(enabled, "bench"))
    return time_model(llm, prompt_tokens=400, new_tokens=48)


def time_model(llm, prompt_tokens: int, new_tokens: int) -> dict[str, float]:  # noqa: ANN001 - a llama_cpp.Llama
    """Tokens per second reading a prompt and generating greedily (shared with bench_threads.py)."""
    text = "The quick brown fox jumps over the lazy dog. " * 60
    tokens = llm.tokenize(text.encode())[:prompt_tokens]
    llm.eval(tokens[:8])  # first-touch page faults and thread start-up are not part of either figure
    llm.reset()
    t0 = time.perf_counter()
    llm.eval(tokens)
    prompt = len(tokens) / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for _ in range(new_tokens):
        llm.eval([llm.sample(temp=0)])
    return {"prompt": prompt, "decode": new_tokens / (time.perf_counter() - t0)}


def measure(path: Path, enabled: bool) -> dict[str, float]:
    done = subprocess.run([sys.executable, __file__, "--child", str(path), "1" if enabled else "0"],
                          capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"the child failed ({done.returncode}): {done.stderr.strip()[-400:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def requantize(src: Path, folder: Path) -> Path:
    import llama_cpp

    out = folder / (src.stem.split(".")[0] + ".Q4_0.gguf")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_0
    params.allow_requantize = True
    from llama_cpp._utils import suppress_stdout_stderr

    with suppress_stdout_stderr(disable=False):  # llama.cpp prints a line per tensor
        failed = llama_cpp.llama_model_quantize(str(src).encode(), str(out).encode(), ctypes.byref(params))
    if failed:
        raise RuntimeError("llama.cpp could not requantize the model")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gguf", action="append", default=[], help="a GGUF file to measure (repeatable)")
    parser.add_argument("--repeats", type=int, default=3, help="child processes per setting and file")
    parser.add_argument("--no-q4_0", action="store_true", help="skip the Q4_0 copy of the shipped model")
    parser.add_argument("--force", action="store_true", help="measure 'on' even on an AMX CPU (it crashes there)")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], args.child[1] == "1")))
        return

    from mmreact.llms import llama_cpu as native
    from mmreact.llms.gguf import default_model_path

    print(f"CPU: {native.cpu_model()}; llama.cpp: {native.system_info()}")
    print(f"mmreact's setting here: extra buffer types {native.extra_bufts().reason}")
    skip_on = native.has_amx() and not args.force
    with tempfile.TemporaryDirectory() as tmp:
        files = [Path(p) for p in args.gguf] or [default_model_path()]
        if not args.gguf and not args.no_q4_0:
            files.append(requantize(files[0], Path(tmp)))
        print(f"{'file':34} {'setting':8} {'prompt tok/s':>13} {'decode tok/s':>13}")
        for path in files:
            runs: dict[bool, list[dict[str, float]]] = {True: [], False: []}
            for _ in range(args.repeats):
                for enabled in (False, True):
                    if enabled and skip_on:
                        continue
                    runs[enabled].append(measure(path, enabled))
            med = {k: {m: statistics.median(r[m] for r in v) for m in ("prompt", "decode")} for k, v in runs.items() if v}
            for enabled, m in sorted(med.items(), reverse=True):
                print(f"{path.name[:34]:34} {'on' if enabled else 'off':8} {m['prompt']:13.0f} {m['decode']:13.0f}")
            if True in med and False in med:
                print(f"{'':34} {'off/on':8} {med[False]['prompt'] / med[True]['prompt']:12.2f}x "
                      f"{med[False]['decode'] / med[True]['decode']:12.2f}x")
            elif skip_on:
                print(f"{'':34} (on: skipped, this CPU has AMX; --force to try)")


if __name__ == "__main__":
    main()
