"""Do the tests catch the bugs they were written for? Plant each bug, run its tests, restore.

Each mutation is a realistic one-line bug (most went unnoticed by the suite once, see issue 11):
the script writes it into the source, runs the named tests, and reports CAUGHT (the tests
failed) or MISSED; the source is always restored, also on Ctrl-C.

    python tools/mutation_check.py            # every mutation (about 15 pytest runs)
    python tools/mutation_check.py --list     # what would be planted
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: (file, original text, planted bug, tests that must catch it)
MUTATIONS: list[tuple[str, str, str, str]] = [
    ("mmreact/agent.py", "            self.memo = memo_before\n", "", "tests/test_loop.py"),
    ("mmreact/agent.py", "            self.images.truncate(before)\n", "", "tests/test_loop.py"),
    ("mmreact/agent.py", "failures >= agent.max_errors", "failures > agent.max_errors", "tests/test_loop.py"),
    ("mmreact/agent.py", "ran[canonical] = fut.result(timeout=left)",
     "ran[canonical] = fut.result(timeout=self.tool_timeout)", "tests/test_loop.py"),
    ("mmreact/agent.py", "session.memo.update({canonical: r for canonical, r in ran.items() if not r.error})",
     "session.memo.update(ran)", "tests/test_loop.py"),
    ("mmreact/agent.py",
     '                        text=f"Error: {tool.name} timed out after {self.tool_timeout:g} s.",\n'
     "                    )\n",
     '                        text=f"Error: {tool.name} timed out after {self.tool_timeout:g} s.",\n'
     "                    )\n                    session.memo[canonical] = records[i]\n", "tests/test_loop.py"),
    ("mmreact/cache.py", "        if obs.error:\n            return", "        if False:\n            return",
     "tests/test_loop.py"),
    ("mmreact/agent.py", "            if cut:\n                text = text[: cut.start()]",
     "            if False:\n                text = text[: cut.start()]", "tests/test_loop.py"),
    ("mmreact/cache.py",
     'parts = {k: (f"sha256:{v.sha256}" if isinstance(v, Image) else v) for k, v in arguments.items()}',
     'parts = {k: f"sha256:{v.sha256}" for k, v in arguments.items() if isinstance(v, Image)}',
     "tests/test_loop.py"),
    ("mmreact/tools/base.py", 'return f"{self.cache_version}|code:{code_hash(self._fn)}"', "return self.cache_version",
     "tests/test_loop.py"),
    ("mmreact/experts/base.py",
     "return self._identity if self._identity is not None else self._current_identity()",
     "return self.cache_version", "tests/test_loop.py"),
    ("mmreact/images.py", "    if a.shape[0] * a.shape[1] > max_pixels:\n", "    if False:\n",
     "tests/test_images.py"),
    ("mmreact/images.py", "        if source.width * source.height > max_pixels:\n", "        if False:\n",
     "tests/test_images.py"),
    ("mmreact/experts/ocr.py", "        words = sorted(line, key=lambda p: p.box[0])", "        words = line",
     "tests/test_experts_detect_ocr.py::test_group_lines"),
    ("mmreact/experts/detect.py", '"box": clip_box(xyxy, img.width, img.height)', '"box": clip_box(xyxy, img.height, img.width)',
     "tests/test_experts_detect_ocr.py::test_boxes_on_a_wide_image_are_ultralytics_own"),
    ("mmreact/llms/llama_cpu.py", "    if has_amx(flags):\n", "    if False:\n", "tests/test_llama_cpu.py"),
    ("mmreact/eval/runner.py", 'if retry_errors and record.status == "error":', 'if record.status == "error":',
     "tests/test_eval.py::test_retry_errors_and_corrupt_lines"),
    # found in stop 19's CI and after it
    ("mmreact/prefetch.py", "if prefetchable(t) and weights_here(t)]", "if prefetchable(t)]",
     "tests/test_prefetch.py::test_a_guess_never_starts_a_download"),
    ("mmreact/llms/gguf.py", "        forced = self.forced_step(request)\n", "        forced = None\n",
     "tests/test_llm_local.py::test_a_forced_step_needs_no_model"),
    ("mmreact/agent.py", "        agent._start_llm_load()\n", "",
     "tests/test_prefetch.py::test_the_first_turn_loads_the_llm_while_the_experts_run"),
    ("mmreact/agent.py", "        timings[\"llm\"] = llm.result()", "        timings[\"llm\"] = self._timed_llm_load()",
     "tests/test_eval_resume.py::test_an_agent_is_loaded_once_before_its_items"),
    ("mmreact/eval/runner.py", 'sum(getattr(s, "decided", None) != "forced" for s in steps)', "len(steps)",
     "tests/test_eval.py::test_a_forced_step_is_not_an_llm_call"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--list", action="store_true", help="only list the mutations")
    args = parser.parse_args()
    missed = 0
    for path, old, new, tests in MUTATIONS:
        label = f"{path}: {' '.join(old.split())[:70]}"
        if args.list:
            print(f"{label}  ->  {' '.join(new.split())[:50] or '(deleted)'}   [{tests}]")
            continue
        file = ROOT / path
        source = file.read_text(encoding="utf-8")
        if old not in source:
            print(f"STALE   {label} (the original text is no longer in the file)")
            missed += 1
            continue
        file.write_text(source.replace(old, new, 1), encoding="utf-8")
        try:
            done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", tests],
                                  cwd=ROOT, capture_output=True, text=True, timeout=1200)
        finally:
            file.write_text(source, encoding="utf-8")
        caught = done.returncode != 0
        missed += not caught
        print(f"{'CAUGHT' if caught else 'MISSED'}  {label}", flush=True)
    if not args.list:
        print(f"{len(MUTATIONS) - missed} of {len(MUTATIONS)} caught")
        sys.exit(1 if missed else 0)


if __name__ == "__main__":
    main()
