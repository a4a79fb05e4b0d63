"""Do the tests catch the bugs they were written for? Plant each bug, run its tests, restore.

Each mutation is a realistic one-line bug (most went unnoticed by the suite once, see issue 11):
the script writes it into the source, runs the named tests, and reports CAUGHT (the tests
failed) or MISSED; the source is always restored, also on Ctrl-C.

    python tools/mutation_check.py            # every mutation (about 15 pytest runs)
    python tools/mutation_check.py --list     # what would be planted
    python tools/mutation_check.py --only grounding   # the mutations in files whose path holds "grounding"
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
    # issue 25: behaviours users rely on that no test checked (a few of the 38 bugs its tests were written for)
    ("mmreact/serve/app.py", 'if not ok or scheme.lower() != "bearer":', "if not ok:",
     "tests/test_contract_serve.py::test_a_valid_key_under_another_scheme_is_refused"),
    ("mmreact/serve/_admission.py", "if self.running + self.queued >= self.max_concurrency + self.max_queue:",
     "if self.queued >= self.max_queue:",
     "tests/test_contract_serve.py::test_max_queue_0_answers_on_an_idle_server_and_refuses_while_busy"),
    ("mmreact/serve/_response.py", '"max_steps": "length"', '"max_steps": "stop"',
     "tests/test_contract_serve.py::test_a_run_that_stops_at_max_steps_has_finish_reason_length"),
    ("mmreact/datagen/_store.py", 'elif out[i].status == "error":', "elif out[i].status != r.status:",
     "tests/test_contract_datagen.py::test_a_later_error_line_never_replaces_an_accepted_record"),
    ("mmreact/fewshot.py", "[img.sha256 for img in s.images]]", "len(s.images)]",
     "tests/test_contract_fewshot.py::test_examples_that_differ_only_in_their_images_have_different_fingerprints"),
    ("mmreact/cache.py", "self._mem.popitem(last=False)", "self._mem.popitem(last=True)",
     "tests/test_contract_cache.py::test_a_full_cache_evicts_the_least_recently_used_entry_and_keeps_the_newest"),
    ("mmreact/weights/hub.py", "            cached = _whole_file(here, sizes[name])\n", "            cached = here.is_file()\n",
     "tests/test_contract_weights.py::test_pull_dry_run_lists_a_short_file_as_to_download"),
]

#: 20 bugs written after issue 25, in the newest code (grounding, serve, datagen, prefetch), each planted
#: once against the whole test file(s) a developer would run for that module.
G, GR = "tests/test_grounding.py", "tests/test_grounding.py tests/test_grounded_runs.py"
SV = "tests/test_serve.py tests/test_contract_serve.py tests/test_serve_load.py"
DG = "tests/test_datagen_filters.py tests/test_contract_datagen.py tests/test_datagen_rerun.py"
PF = "tests/test_prefetch.py tests/test_contract_cache.py"
MUTATIONS += [
    ("mmreact/grounding/_check.py", "if v & span.value:  # type: ignore[operator]",
     "if v | span.value:  # type: ignore[operator]", G),
    ("mmreact/grounding/_check.py", "(y1 is None or y2 is None or y1 == y2)", "True", G),
    ("mmreact/grounding/_check.py", "        if m.negated:\n            continue\n", "", G),
    ("mmreact/grounding/_facts.py", "frozenset({(h, mi), ((h + 12) % 24, mi)} if 1 <= h <= 12 else {(h, mi)})",
     "frozenset({(h, mi)})", G),
    ("mmreact/grounding/_facts.py", '    elif re.fullmatch(r"-?\\d+,\\d{1,2}", t):\n', "    elif False:\n", G),
    ("mmreact/grounding/_check.py", "visual = any(e.kind in VISUAL_KINDS for e in evidence)", "visual = bool(evidence)", GR),
    ("mmreact/grounding/_check.py", "if computing and value in question_numbers:", "if value in question_numbers:", G),
    ("mmreact/grounding/_check.py", 'parts = [p for p in re.split(r"\\s+(?:and|&)\\s+", span.text) if p]',
     "parts = [span.text]", G),
    ("mmreact/serve/_admission.py", '            self.counts["queue_timeout"] += 1\n', "", SV),
    ("mmreact/serve/_request.py", 'if not turns or turns[-1].role != "user":', "if not turns:", SV),
    ("mmreact/serve/_request.py", "n != 1):", "n > 1):", SV),
    ("mmreact/serve/_image_urls.py", "if declared is not None and declared > self.max_bytes:", "if False:", SV),
    ("mmreact/serve/_image_urls.py", "if len(payload) // 4 * 3 > max_bytes:", "if len(payload) > 4 * max_bytes:", SV),
    ("mmreact/datagen/_checks.py", "    if top < 2:\n", "    if top < 1:\n", DG),
    ("mmreact/datagen/_checks.py", " or answer_classes & context_classes:", ":", DG),
    ("mmreact/datagen/_identity.py", "if known.stat is not None and tuple(known.stat) == now:",
     "if known.stat is not None:", DG),
    ('mmreact/datagen/_checks.py', '    if stripped.endswith("?") and not re.search(r"[.!](?:\\s|$)", stripped[:-1]):\n',
     '    if stripped.endswith("?"):\n', DG),
    ("mmreact/prefetch.py", "            if job.future.cancel():\n", "            if False:\n", PF),
    ("mmreact/prefetch.py", "    return tool.cacheable and len(tool.image_params) == 1 and len(required) == 1",
     "    return len(tool.image_params) == 1 and len(required) == 1", PF),
    ("mmreact/prefetch.py", "    if not getattr(llm, \"runs_locally\", False) or _gpu():\n",
     "    if not getattr(llm, \"runs_locally\", False):\n", PF),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--list", action="store_true", help="only list the mutations")
    parser.add_argument("--only", metavar="TEXT", help="only the mutations whose file path contains TEXT")
    args = parser.parse_args()
    chosen = [m for m in MUTATIONS if args.only is None or args.only in m[0]]
    missed = 0
    for path, old, new, tests in chosen:
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
            done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests.split()],
                                  cwd=ROOT, capture_output=True, text=True, timeout=1200)
        finally:
            file.write_text(source, encoding="utf-8")
        caught = done.returncode != 0
        missed += not caught
        print(f"{'CAUGHT' if caught else 'MISSED'}  {label}", flush=True)
    if not args.list:
        print(f"{len(chosen) - missed} of {len(chosen)} caught")
        sys.exit(1 if missed else 0)


if __name__ == "__main__":
    main()
