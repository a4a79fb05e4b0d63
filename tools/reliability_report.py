"""Reliability figures (issue 7): hostile images, injected faults, concurrent runs, kill -9 / resume.

    python tools/reliability_report.py [--runs 50] [--kills 3] [--no-ocr]

1. Bad inputs: hostile and unusual image files are generated into a temp folder; each goes through
   ``mmreact.images.load_image`` and through ``python -m mmreact experts FILE`` (a subprocess, with a
   tiny probe tool installed as a plug-in). Handled means: rejected with one line (``ImageError`` in
   Python; exit 2 and a single ``mmreact: error:`` line from the CLI) or accepted and normalised to RGB
   (the CLI sees the same pixels), never a traceback.
2. Faults: an LLM behind a loopback chat-completions server (``tests/servers.py``) that times out,
   rate-limits, fails, answers empty, enormous or broken text, or drops the stream; tools that raise,
   hang or return nonsense; a 6x upscaled receipt read by real OCR (skipped without EasyOCR or with
   ``--no-ocr``). Survived means: an observation the run went on with, or a one-sentence ``LLMError``
   whose trace keeps the steps made so far.
3. Concurrent runs: ``--runs`` agent runs held in flight at once (a barrier inside the shared tool),
   compared with the same runs done one by one; a shared cacheable tool under a small cache limit.
4. Batch items lost: ``mmreact.eval.runner`` in a subprocess killed with SIGKILL ``--kills`` times
   (4 worker threads, a torn last line added once), then resumed to the end.

Exit status 1 when anything was not handled. About a minute on 2 cores (half of it the OCR case).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
os.environ.pop("OPENAI_API_KEY", None)
os.environ.pop("OPENAI_BASE_URL", None)

from PIL import Image as PILImage  # noqa: E402

from mmreact import Agent, Image, LLMError, Observation, ScriptedLLM, Trace, load_image, tool  # noqa: E402
from mmreact.errors import ImageError  # noqa: E402
from mmreact.images import MB, ImagePolicy  # noqa: E402
from servers import Reply, ScriptedOpenAI  # noqa: E402

ENV = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


@dataclass
class Row:
    case: str
    outcome: str
    ok: bool


def one_line(text: str) -> bool:
    return "\n" not in text.strip() and "Traceback" not in text and 0 < len(text) < 400


def table(title: str, rows: list[Row]) -> None:
    width = max(len(r.case) for r in rows)
    print(f"\n{title}")
    for r in rows:
        print(f"  {'ok ' if r.ok else 'BAD'}  {r.case.ljust(width)}  {r.outcome}")


# -- 1. hostile images --------------------------------------------------------------------------
PROBE_PLUGIN = '''
from mmreact import Image, tool

@tool
def pixel_probe(image: Image) -> str:
    """Size, mode and top-left pixel of the image."""
    return f"{image.width}x{image.height} {image.pil.mode} {tuple(image.to_numpy()[0, 0].tolist())}"
'''


def install_probe(folder: Path) -> None:
    (folder / "mmreact_reliability_probe.py").write_text(PROBE_PLUGIN)
    info = folder / "mmreact_reliability_probe-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mmreact_reliability_probe\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[mmreact.tools]\nprobe = mmreact_reliability_probe:pixel_probe\n")


@dataclass
class ImageCase:
    name: str
    source: str
    accept: bool
    check: Callable[[Image], bool] = lambda img: True
    env: dict[str, str] = field(default_factory=dict)


def _forged_png(path: Path, w: int, h: int) -> None:
    """A valid 8x8 PNG whose header then claims ``w`` x ``h`` pixels (CRC fixed up)."""
    buf = io.BytesIO()
    PILImage.new("RGB", (8, 8)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    chunk = b"IHDR" + struct.pack(">II", w, h) + bytes(data[24:29])
    data[12:29] = chunk
    data[29:33] = struct.pack(">I", zlib.crc32(chunk))
    path.write_bytes(bytes(data))


def image_cases(d: Path) -> list[ImageCase]:
    red, blue = (220, 20, 20), (20, 20, 220)
    noise = PILImage.effect_noise((256, 256), 60).convert("RGB")
    (d / "empty.png").write_bytes(b"")
    (d / "notes.jpg").write_text("hello, not an image")
    (d / "report.png").write_bytes(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n")
    noise.save(d / "whole.png")
    (d / "cut.png").write_bytes((d / "whole.png").read_bytes()[:300])
    noise.save(d / "whole.jpg", quality=90)
    (d / "cut.jpg").write_bytes((d / "whole.jpg").read_bytes()[:200])
    mangled = bytearray((d / "whole.png").read_bytes())
    mangled[len(mangled) // 2:len(mangled) // 2 + 64] = bytes(64)
    (d / "mangled.png").write_bytes(bytes(mangled))
    PILImage.new("1", (12000, 12000)).save(d / "bomb.png")
    _forged_png(d / "forged.png", 100_000, 100_000)
    PILImage.effect_noise((700, 700), 80).convert("RGB").save(d / "big_file.png")  # ~1.5 MB
    root = d / "allowed"
    root.mkdir()
    PILImage.new("RGB", (5, 5), red).save(root / "inside.png")
    PILImage.new("RGB", (5, 5), blue).save(d / "secret.png")
    (root / "link.png").symlink_to(d / "secret.png")
    rotated = PILImage.new("RGB", (40, 20), red)
    exif = rotated.getexif()
    exif[0x0112] = 6
    rotated.save(d / "exif_rotated.jpg", exif=exif)
    PILImage.new("CMYK", (16, 16), (0, 255, 255, 0)).save(d / "cmyk.jpg")
    PILImage.fromarray(np.linspace(0, 4000, 64 * 32, dtype=np.uint16).reshape(32, 64)).save(d / "grey16.png")
    PILImage.new("L", (16, 16), 128).save(d / "grey.png")
    PILImage.new("RGBA", (16, 16), (255, 0, 0, 0)).save(d / "transparent.png")
    pal = PILImage.new("P", (16, 16), 0)
    pal.putpalette([220, 20, 20, 0, 0, 0] + [0] * 762)
    pal.save(d / "palette.png", transparency=1)
    frames = [PILImage.new("RGB", (12, 12), c) for c in (red, blue)]
    frames[0].save(d / "anim.gif", save_all=True, append_images=frames[1:])
    frames[0].save(d / "pages.tiff", save_all=True, append_images=frames[1:])
    PILImage.effect_noise((6000, 4000), 40).convert("RGB").save(d / "photo_24mp.jpg", quality=70)
    PILImage.new("RGB", (1, 1), red).save(d / "one_pixel.png")

    def near(img: Image, rgb: tuple[int, int, int], tol: int = 40) -> bool:
        return bool(np.abs(img.to_numpy()[0, 0].astype(int) - rgb).max() <= tol)

    rooted = {"MMREACT_IMAGE_ROOT": str(root)}
    return [
        ImageCase("missing file", str(d / "nope.png"), False),
        ImageCase("a directory", str(d), False),
        ImageCase("zero-byte .png", str(d / "empty.png"), False),
        ImageCase("text file named .jpg", str(d / "notes.jpg"), False),
        ImageCase("PDF named .png", str(d / "report.png"), False),
        ImageCase("truncated PNG", str(d / "cut.png"), False),
        ImageCase("truncated JPEG", str(d / "cut.jpg"), False),
        ImageCase("corrupt PNG data", str(d / "mangled.png"), False),
        ImageCase("bomb 12000x12000", str(d / "bomb.png"), False),
        ImageCase("forged header 1e5x1e5", str(d / "forged.png"), False),
        ImageCase("over 1 MB size limit", str(d / "big_file.png"), False, env={"MMREACT_MAX_IMAGE_MB": "1"}),
        ImageCase("https URL", "https://example.com/cat.jpg", False),
        ImageCase("metadata-address URL", "http://169.254.169.254/latest/x.png", False),
        ImageCase("'..' escape from root", str(root / ".." / "secret.png"), False, env=rooted),
        ImageCase("symlink escape from root", str(root / "link.png"), False, env=rooted),
        ImageCase("file inside allowed root", str(root / "inside.png"), True, lambda i: near(i, red), rooted),
        ImageCase("EXIF-rotated JPEG", str(d / "exif_rotated.jpg"), True, lambda i: i.size == (20, 40)),
        ImageCase("CMYK JPEG", str(d / "cmyk.jpg"), True, lambda i: near(i, (255, 0, 0), 60)),
        ImageCase("16-bit grey PNG", str(d / "grey16.png"), True, lambda i: int(i.to_numpy().max()) == 255),
        ImageCase("greyscale PNG", str(d / "grey.png"), True, lambda i: near(i, (128, 128, 128), 0)),
        ImageCase("transparent RGBA PNG", str(d / "transparent.png"), True, lambda i: near(i, (255, 255, 255), 0)),
        ImageCase("palette PNG", str(d / "palette.png"), True, lambda i: near(i, red, 0)),
        ImageCase("2-frame GIF", str(d / "anim.gif"), True, lambda i: near(i, red, 10) and "frame 1 of 2" in i.source),
        ImageCase("2-page TIFF", str(d / "pages.tiff"), True, lambda i: near(i, red, 0) and "frame 1 of 2" in i.source),
        ImageCase("24 MP photo", str(d / "photo_24mp.jpg"), True, lambda i: i.size == (6000, 4000)),
        ImageCase("1x1 image", str(d / "one_pixel.png"), True, lambda i: i.size == (1, 1)),
    ]


def check_image(case: ImageCase, plugin_dir: Path) -> Row:
    env_policy = {"allowed_root": case.env.get("MMREACT_IMAGE_ROOT")}
    if "MMREACT_MAX_IMAGE_MB" in case.env:
        env_policy["max_bytes"] = int(float(case.env["MMREACT_MAX_IMAGE_MB"]) * MB)
    policy = ImagePolicy(**env_policy)  # type: ignore[arg-type]
    py_ok, py_note, probe = False, "", ""
    try:
        img = load_image(case.source, policy=policy)
    except ImageError as exc:
        py_ok, py_note = not case.accept and one_line(str(exc)), str(exc)
    except Exception as exc:  # noqa: BLE001 - an untyped failure is exactly what this looks for
        py_note = f"UNTYPED {type(exc).__name__}: {exc}"
    else:
        probe = f"{img.width}x{img.height} {img.pil.mode} {tuple(img.to_numpy()[0, 0].tolist())}"
        py_ok = case.accept and img.pil.mode == "RGB" and case.check(img)
        py_note = f"RGB {img.width}x{img.height}"
    env = {**ENV, **case.env, "PYTHONPATH": ENV["PYTHONPATH"] + os.pathsep + str(plugin_dir)}
    proc = subprocess.run([sys.executable, "-m", "mmreact", "experts", case.source, "--tools", "pixel_probe", "--json"],
                          capture_output=True, text=True, env=env, timeout=120, cwd=plugin_dir)
    if case.accept:
        try:
            got = json.loads(proc.stdout)["results"][0]["text"]
        except (ValueError, KeyError, IndexError):
            got = None
        cli_ok = proc.returncode == 0 and got == probe and "Traceback" not in proc.stderr
        cli_note = f"exit {proc.returncode}, same pixels" if got == probe else f"exit {proc.returncode}, got {got!r}"
    else:
        err = proc.stderr.strip()
        cli_ok = proc.returncode == 2 and one_line(err) and err.startswith("mmreact: error:") and not proc.stdout
        cli_note = f"exit {proc.returncode}, {len(proc.stderr.splitlines())} stderr line"
    verdict = "accepted" if case.accept else "rejected"
    note = py_note if len(py_note) < 70 else py_note[:67] + "..."
    return Row(case.name, f"{verdict if py_ok else 'NOT ' + verdict}: {note} | CLI {cli_note}", py_ok and cli_ok)


# -- 2. faults ----------------------------------------------------------------------------------
IMG = np.zeros((4, 6, 3), np.uint8)


@tool
def size(image: Image) -> str:
    """Width and height of the image."""
    return f"{image.width}x{image.height}"


ACT = Reply(content="Thought: measure.\nAction: size(image_1)")
FAST = {"retry-after-ms": "10"}


def llm_case(replies: list[Reply], *, stream: bool = False, repeat: bool = False, steps: int | None = None,
             **kw: Any) -> tuple[bool, str]:
    """``steps`` None: the run must answer; else it must raise a one-sentence LLMError with that many steps."""
    kw.setdefault("max_retries", 0)
    chunks: list[str] = []
    with ScriptedOpenAI(replies, repeat_last=repeat) as srv:
        llm = _openai(srv.base_url, **kw)
        try:
            result = Agent(llm, tools=[size]).run("How big?", IMG, **({"on_text": chunks.append} if stream else {}))
        except LLMError as exc:
            t = exc.trace
            ok = (steps is not None and t is not None and len(t.steps) == steps and one_line(str(exc))
                  and t.status == "llm_error" and Trace.from_json(t.to_json()) == t)
            return bool(ok), f"LLMError, {len(t.steps) if t else '?'} step(s) kept: {str(exc)[:60]}..."
    ok = steps is None and result.answer == "6x4" and Trace.from_json(result.trace.to_json()) == result.trace
    errors = sum(1 for s in result.trace.steps if s.error)
    return ok, f"answered after {len(result.trace.steps)} steps ({errors} unusable), {len(srv.requests)} requests"


def _openai(url: str, **kw: Any) -> Any:
    from mmreact.llms.openai import OpenAILLM

    return OpenAILLM("test-model", base_url=url, mode="text", **kw)


def cli_case() -> tuple[bool, str]:
    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / "p.png"
        PILImage.new("RGB", (6, 4)).save(image)
        with ScriptedOpenAI([Reply(content="Action: zoom(image_1)"), Reply.fail(503, "overloaded", headers=FAST)],
                            repeat_last=True) as srv:
            proc = subprocess.run([sys.executable, "-m", "mmreact", "ask", str(image), "How big?", "--llm",
                                   f"openai:test-model@{srv.base_url}", "--tools", "ocr", "--json"],
                                  capture_output=True, text=True, env=ENV, timeout=120, cwd=tmp)
    try:
        steps = len(Trace.from_json(proc.stdout).steps)
    except ValueError:
        steps = -1
    ok = proc.returncode == 2 and one_line(proc.stderr) and steps == 1
    return ok, f"exit {proc.returncode}, {len(proc.stderr.splitlines())} stderr line, trace on stdout: {steps} step"


def tool_case(make: Callable[[], Any], *, expect_error: bool, timeout: float | None = None) -> tuple[bool, str]:
    @tool
    def odd(image: Image) -> str:
        """Return something odd."""
        return make()

    llm = ScriptedLLM(["Action: odd(image_1)", "Final Answer: went on"])
    result = Agent(llm, tools=[odd], tool_timeout=timeout).run("q", IMG)
    call = result.trace.calls[0]
    prompt = len(llm.requests[1].messages[-1].content)
    result.trace.to_json()
    ok = result.answer == "went on" and call.error == expect_error and prompt < 6300
    kind = "error observation" if call.error else "observation"
    return ok, f"{kind} ({len(call.text):,} chars, {prompt:,} to the model): {call.text[:40]!r}"


def ocr_case() -> tuple[bool, str] | None:
    from mmreact.experts.ocr import OCRTool

    ocr = OCRTool()
    if ocr.check() is not None:
        return None
    strip = PILImage.open(ROOT / "examples" / "receipt.png").convert("RGB").crop((0, 210, 480, 275))
    big = strip.resize((strip.width * 6, strip.height * 6), PILImage.Resampling.BICUBIC)
    small_box = ocr(strip).artifact["lines"][0]["box"]
    lines = ocr(big).artifact["lines"]
    want = [v * 6 for v in small_box]
    extent = (want[2] - want[0], want[3] - want[1]) * 2
    box = lines[0]["box"]
    within = all(abs(g - w) <= 0.1 * e + 6 for g, w, e in zip(box, want, extent))  # 10% + one 1x pixel
    ok = len(lines) == 1 and lines[0]["text"] == "TOTAL 7.75" and within and box[2] > 2560
    worst = max(abs(g - w) for g, w in zip(box, want))
    return ok, (f"{lines[0]['text']!r} at {[round(v) for v in box]} on the 2880 px image; 1x box x6 is "
                f"{[round(v) for v in want]} (worst edge {worst:.0f} px off)")


def faults(with_ocr: bool) -> list[Row]:
    def hang() -> str:
        time.sleep(1.5)
        return "late"

    done = Reply(content="Final Answer: 6x4")
    mb = Reply(content="x" * 1_000_000)
    cut = {"content": "Final Answer: 6x4 it is", "drop_after_chunks": 3}
    weird = Reply(content="Thought: \ud800\nAction: size(image_1)")
    cases: list[tuple[str, Callable[[], tuple[bool, str] | None]]] = [
        ("LLM times out", lambda: llm_case([ACT, Reply(content="Final Answer: x", delay=3)], steps=1, timeout=0.5)),
        ("LLM 429 then ok", lambda: llm_case([ACT, Reply.fail(429, "slow down", headers=FAST), done], max_retries=2)),
        ("LLM 5xx forever", lambda: llm_case([ACT, Reply.fail(503, "overloaded", headers=FAST)], repeat=True,
                                             steps=1, max_retries=3)),
        ("LLM empty replies", lambda: llm_case([Reply(content=""), Reply(content=None), ACT, done])),
        ("LLM 1 MB reply", lambda: llm_case([mb, ACT, done])),
        ("LLM 1 MB streamed", lambda: llm_case([mb, ACT, done], stream=True)),
        ("stream reset mid-reply", lambda: llm_case([ACT, Reply(**cut)], stream=True, steps=1, max_retries=2)),
        ("stream closed early", lambda: llm_case([ACT, Reply(**cut, drop_quietly=True)], stream=True, steps=1)),
        ("LLM broken unicode", lambda: llm_case([weird, done])),
        ("LLM 5xx via the CLI", cli_case),
        ("tool raises", lambda: tool_case(lambda: 1 / 0, expect_error=True)),
        ("tool hangs (0.2 s limit)", lambda: tool_case(hang, expect_error=True, timeout=0.2)),
        ("tool returns object()", lambda: tool_case(object, expect_error=False)),
        ("tool returns None", lambda: tool_case(lambda: None, expect_error=False)),
        ("tool returns 5 MB text", lambda: tool_case(lambda: "y" * 5_000_000, expect_error=False)),
        ("tool text is an int", lambda: tool_case(lambda: Observation(text=7), expect_error=True)),  # type: ignore
        ("tool artifact not JSON", lambda: tool_case(lambda: Observation("ok", {"f": open}), expect_error=False)),
        ("tool broken unicode", lambda: tool_case(lambda: "caf\udce9", expect_error=False)),
    ]
    if with_ocr:
        cases.append(("6x receipt, real OCR", ocr_case))
    rows = []
    for name, fn in cases:
        try:
            got = fn()
        except Exception as exc:  # noqa: BLE001 - a crash is a fault not survived
            got = (False, f"CRASHED {type(exc).__name__}: {str(exc)[:80]}")
        if got is not None:
            rows.append(Row(name, got[1], got[0]))
    return rows


# -- 3. concurrency -----------------------------------------------------------------------------
def concurrency(n: int) -> list[Row]:
    from mmreact.cache import configure

    barrier = threading.Barrier(n, timeout=60)
    state = {"in_flight": 0, "peak": 0, "use_barrier": False}
    lock = threading.Lock()

    @tool
    def describe(image: Image) -> str:
        """Size and corner colour."""
        with lock:
            state["in_flight"] += 1
            state["peak"] = max(state["peak"], state["in_flight"])
        if state["use_barrier"]:
            barrier.wait()  # every run is inside the shared tool at the same moment
        with lock:
            state["in_flight"] -= 1
        return f"{image.width}x{image.height} {tuple(image.to_numpy()[0, 0].tolist())}"

    cached = tool(describe.__wrapped__, name="describe_cached", cacheable=True)
    images = [np.full((i + 1, 2 * n - i, 3), (i, 255 - i, i % 7), np.uint8) for i in range(n)]

    def one(i: int, t: Any = describe) -> tuple[str | None, str, tuple[str, ...]]:
        llm = ScriptedLLM([f"Action: {t.name}(image_1)", lambda r: "Final Answer: " + r.messages[-1].content])
        result = Agent(llm, tools=[t]).run(f"run {i}?", images[i])
        return result.answer, result.trace.images[0].sha256, tuple(c.reused or "-" for c in result.trace.calls)

    sequential = [one(i) for i in range(n)]
    state["use_barrier"], state["peak"] = True, 0
    with ThreadPoolExecutor(n) as pool:
        parallel = list(pool.map(one, range(n)))
    own = [load_image(im).sha256 for im in images]
    crosstalk = sum(p != s or p[1] != own[i] or f"{2 * n - i}x{i + 1}" not in (p[0] or "")
                    for i, (p, s) in enumerate(zip(parallel, sequential)))
    state["use_barrier"] = False
    limit = min(16, n)
    cache = configure(max_entries=limit)
    with ThreadPoolExecutor(n) as pool:  # fill the cache, answer as many again from it, then all n runs
        fill = list(pool.map(lambda i: one(i, cached), range(limit)))
        hits = list(pool.map(lambda i: one(i, cached), range(limit)))
        every = list(pool.map(lambda i: one(i, cached), range(n)))
    truth = [f"{2 * n - i}x{i + 1} {tuple(int(v) for v in images[i][0, 0])}" for i in range(n)]
    wrong = sum(truth[i] not in (a[0] or "").splitlines() for runs in (fill, hits, every) for i, a in enumerate(runs))
    from_cache = sum(a[2] == ("cache",) for a in hits)
    held = len(cache)
    configure()
    rows = [Row(f"{n} runs at once", f"{state['peak']} in flight together, {crosstalk} differ from sequential runs "
                f"or saw another run's image", state["peak"] == n and crosstalk == 0),
            Row("shared cached tool", f"{from_cache}/{limit} repeat runs served from cache, {wrong} wrong answers "
                f"in {2 * limit + n} runs, {held} entries held (limit {limit})",
                held <= limit and wrong == 0 and from_cache == limit)]
    return rows


# -- 4. kill -9 / resume ------------------------------------------------------------------------
EVAL_SCRIPT = """
import sys, time
from mmreact.eval import load_jsonl, run_eval

class Slow:
    def __init__(self, answer):
        self.answer = answer
    def run(self, question, images):
        time.sleep(0.04)
        return self.answer

run_eval(load_jsonl(sys.argv[1]), {"a": Slow("red"), "b": Slow("blue")}, sys.argv[2], concurrency=4,
         progress=False)
"""


def kill_resume(kills: int, items: int = 40) -> tuple[Row, int, int, int]:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        data, script, out = d / "set.jsonl", d / "run.py", d / "out"
        data.write_text("".join(json.dumps({"id": f"q{i}", "question": f"q {i}?", "answers": ["red"]}) + "\n"
                                for i in range(items)))
        script.write_text(EVAL_SCRIPT)
        results = out / "results.jsonl"
        killed, rewritten = 0, 0
        for k in range(kills):
            before = results.read_bytes() if results.exists() else b""
            start = before.count(b"\n")
            proc = subprocess.Popen([sys.executable, str(script), str(data), str(out)], env=ENV)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and proc.poll() is None:
                if results.exists() and results.read_bytes().count(b"\n") >= start + 7 + 3 * k:
                    break
                time.sleep(0.01)
            proc.kill()
            proc.wait(timeout=10)
            killed += proc.returncode == -9
            rewritten += not results.read_bytes().startswith(before.rsplit(b"\n", 1)[0])
            if k == 0:
                with open(results, "a") as f:
                    f.write('{"system": "b", "item": "q1')  # as if the kill had torn a line
        done = subprocess.run([sys.executable, str(script), str(data), str(out)], env=ENV, timeout=120)
        pairs = Counter((x["system"], x["item"]) for x in map(json.loads, results.read_text().splitlines()))
    expected = {(s, f"q{i}") for s in "ab" for i in range(items)}
    lost = len(expected - set(pairs))
    duplicated = sum(c - 1 for c in pairs.values() if c > 1) + len(set(pairs) - expected)
    ok = killed == kills and done.returncode == 0 and lost == 0 and duplicated == 0 and rewritten == 0
    note = (f"{killed}/{kills} runs killed by SIGKILL mid-batch, resumed: {len(expected)} pairs expected, "
            f"{lost} lost, {duplicated} duplicated, {rewritten} earlier lines rewritten")
    return Row("eval kill -9 / resume", note, ok), len(expected), lost, duplicated


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=50, help="simultaneous agent runs")
    ap.add_argument("--kills", type=int, default=3, help="SIGKILLs of the eval batch before it may finish")
    ap.add_argument("--no-ocr", action="store_true", help="skip the large-photo OCR case (EasyOCR, ~20 s)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "plugin").mkdir()
        install_probe(d / "plugin")
        (d / "images").mkdir()
        cases = image_cases(d / "images")
        with ThreadPoolExecutor(2) as pool:
            image_rows = list(pool.map(lambda c: check_image(c, d / "plugin"), cases))
    table("Bad inputs (load_image | python -m mmreact experts FILE)", image_rows)
    fault_rows = faults(not args.no_ocr)
    table("Faults injected", fault_rows)
    conc_rows = concurrency(args.runs)
    table("Concurrent runs", conc_rows)
    kill_row, pairs, lost, duplicated = kill_resume(args.kills)
    table("Batch jobs", [kill_row])
    handled = sum(r.ok for r in image_rows)
    survived = sum(r.ok for r in fault_rows)
    print(f"\nbad inputs: {len(image_rows)} tried, {handled} handled "
          f"({sum(not c.accept for c in cases)} to reject, {sum(c.accept for c in cases)} to accept)")
    print(f"faults: {len(fault_rows)} injected, {survived} survived")
    print(f"concurrent runs: {args.runs} held, {'no' if conc_rows[0].ok else 'SOME'} crosstalk")
    print(f"batch items lost: {lost} of {pairs} (duplicated: {duplicated}) over {args.kills} kill -9 cycles")
    everything = image_rows + fault_rows + conc_rows + [kill_row]
    print(f"all {'passed' if all(r.ok for r in everything) else 'NOT passed'} in {time.perf_counter() - t0:.0f} s")
    return 0 if all(r.ok for r in everything) else 1


if __name__ == "__main__":
    sys.exit(main())
