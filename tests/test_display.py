"""Rich display and annotation: HTML that is well formed, complete and escaped; boxes drawn in the
right place and in the right (RGB) colours; ``--save-annotated`` on the command line; ``live``."""

from __future__ import annotations

import base64
import io
import os
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from mmreact import Agent, Image, Observation, ScriptedLLM, Trace, tool
from mmreact.llms import LLM, Completion, LLMRequest
from mmreact.views.boxes import COLOURS, annotate, annotate_many, calls_for, findings, supervision_available
from mmreact.errors import ConfigError
from mmreact.views.notebook import MAX_IMAGE_WIDTH, live, running_html

ROOT = Path(__file__).resolve().parents[1]
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
HOSTILE = "<script>alert(1)</script>"
BACKENDS = ["pil", pytest.param("supervision", marks=pytest.mark.skipif(not supervision_available(),
                                                                        reason="supervision not installed"))]


class TagChecker(HTMLParser):
    """Records start tags and fails on any end tag that does not close the innermost open one."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.starts: list[tuple[str, dict[str, str | None]]] = []
        self.problems: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):  # noqa: ANN001
        self.starts.append((tag, dict(attrs)))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):  # noqa: ANN001
        self.starts.append((tag, dict(attrs)))

    def handle_endtag(self, tag):  # noqa: ANN001
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"</{tag}> while open: {self.stack}")
        else:
            self.stack.pop()

    def handle_data(self, data):  # noqa: ANN001
        self.text.append(data)


def parse(html: str) -> TagChecker:
    checker = TagChecker()
    checker.feed(html)
    checker.close()
    assert not checker.problems, checker.problems
    assert not checker.stack, f"unclosed tags: {checker.stack}"
    return checker


def tags(html: str) -> list[str]:
    return [t for t, _ in parse(html).starts]


def text_of(html: str) -> str:
    """The visible text (entities decoded), without the style block."""
    checker = parse(html)
    return "".join(checker.text).split("</style>")[-1]


# -- tools with boxes (plain Python, like a user's plug-in) ------------------------------------------
@tool
def boxes(image: Image) -> Observation:
    """Fixed findings of every kind, including text a hostile image could carry."""
    return Observation(
        text=f"found a cat and the text {HOSTILE}",
        artifact={"objects": [{"label": "cat", "confidence": 0.87, "box": [10, 10, 60, 50]}],
                  "regions": [{"caption": "a <b>bold</b> region", "box": [70, 10, 150, 60]}],
                  "lines": [{"text": HOSTILE, "box": [20, 70, 180, 95], "confidence": 0.9}]},
    )


@tool
def long_text(image: Image) -> str:
    """Many lines of output."""
    return "\n".join(f"line {i} & more" for i in range(40))


@tool
def pair(image_a: Image, image_b: Image) -> Observation:
    """A tool that looks at two images (its boxes belong to neither alone)."""
    return Observation(text="compared", artifact={"objects": [{"label": "x", "confidence": 1, "box": [0, 0, 30, 30]}]})


class CountingLLM(LLM):
    """Replays replies and reports token counts, like a real backend."""

    name = "counting"

    def __init__(self, replies: list[str]) -> None:
        self.replies = list(replies)

    def complete(self, request: LLMRequest) -> Completion:
        return Completion(text=self.replies.pop(0), prompt_tokens=100 + len(self.replies), completion_tokens=7)


def picture(width: int = 200, height: int = 120, colour: tuple[int, int, int] = (255, 255, 255)) -> PILImage.Image:
    return PILImage.new("RGB", (width, height), colour)


@pytest.fixture(scope="module")
def result():
    llm = CountingLLM([
        "Thought: look <carefully>\nAction: boxes(image_1)",
        "Thought: read more\nAction: long_text(image_1)\nAction: nope(image_1)",
        f"Thought: done\nFinal Answer: a cat & {HOSTILE}",
    ])
    return Agent(llm, tools=[boxes, long_text]).run("What is <img src=x onerror=alert(1)> here?", [picture()])


# -- HTML -----------------------------------------------------------------------------------------------
def test_result_html_is_well_formed_and_shows_every_step(result):
    html = result._repr_html_()
    text = text_of(html)
    for step in result.trace.steps:
        assert f"Step {step.index}" in text
        assert f"{step.prompt_tokens}+{step.completion_tokens} tokens" in text
        for call in step.calls:
            assert call.call in text
    assert "Thought: look <carefully>" in text  # shown as text, not markup
    assert "llm " in text and "tools " in text and " ms" in text
    assert f"Answer: a cat & {HOSTILE}" in text
    assert "Error: there is no tool named 'nope'" in text
    assert "3 steps in" in text and "counting" in text
    assert html.count('class="mmr-step"') == 3


def test_every_text_is_escaped(result):
    html = result._repr_html_()
    found = tags(html)
    assert "script" not in found and found.count("img") == 1 and "b" in found  # the <b> is ours, for labels
    assert HOSTILE not in html and "<img src=x" not in html and "<carefully>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html


def test_long_observations_fold(result):
    html = result._repr_html_()
    checker = parse(html)
    assert "details" in [t for t, _ in checker.starts]
    folded = html.split("<details>")[1].split("</details>")[0]
    assert "line 39 &amp; more" in folded and "(40 lines" in folded


def test_result_html_has_the_annotated_image(result):
    html = result._repr_html_()
    imgs = [attrs for tag, attrs in parse(html).starts if tag == "img"]
    assert len(imgs) == 1 and imgs[0]["alt"] == "image_1"
    src = imgs[0]["src"]
    assert src.startswith("data:image/png;base64,")
    shown = PILImage.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
    assert shown.format == "PNG" and shown.size == (200, 120)
    assert np.array_equal(np.asarray(shown.convert("RGB")), np.asarray(result.annotated()))
    assert "text lines" in text_of(html) and "objects" in text_of(html)  # the legend


def test_wide_images_are_scaled_down_in_html():
    llm = ScriptedLLM(["Action: boxes(image_1)", "Final Answer: ok"])
    r = Agent(llm, tools=[boxes]).run("q", [picture(1600, 400)])
    src = [a for t, a in parse(r._repr_html_()).starts if t == "img"][0]["src"]
    shown = PILImage.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
    assert shown.size == (MAX_IMAGE_WIDTH, 160)


def test_stop_reason_is_shown_when_there_is_no_answer():
    llm = ScriptedLLM(["Action: boxes(image_1)"], repeat_last=True)
    r = Agent(llm, tools=[boxes], max_steps=2).run("q", [picture()])
    text = text_of(r._repr_html_())
    assert r.answer is None and "Stopped (max_steps):" in text and "Stopped after 2 steps" in text


def test_trace_step_call_chat_and_observation_render(result):
    trace = Trace.from_json(result.trace.to_json())  # also after a JSON round trip
    assert trace._repr_html_() == result.trace._repr_html_()
    assert "<img" not in trace._repr_html_()  # a trace alone has no pixels
    step = result.trace.steps[0]
    assert "Step 1" in text_of(step._repr_html_()) and "&lt;script&gt;" in step._repr_html_()
    call = step.calls[0]
    assert "boxes(image_1)" in text_of(call._repr_html_())
    obs = boxes(picture())
    obs_html = obs._repr_html_()
    assert "artifact" in text_of(obs_html) and "script" not in tags(obs_html)
    failed = Observation.failure(HOSTILE)
    assert 'class="mmr-err"' in failed._repr_html_() and "script" not in tags(failed._repr_html_())


def test_chat_html_shows_turns_and_each_image_once():
    llm = ScriptedLLM(["Action: boxes(image_1)", "Final Answer: one", "Action: boxes(image_1)", "Final Answer: two"])
    chat = Agent(llm, tools=[boxes]).chat()
    assert "no turns yet" in chat._repr_html_()
    chat.ask("first?", [picture()])
    chat.ask("second?")
    html = chat._repr_html_()
    text = text_of(html)
    assert "Turn 1" in text and "Turn 2" in text and "Answer: one" in text and "Answer: two" in text
    assert tags(html).count("img") == 1
    assert "repeated call" in text  # the second turn's identical call came from memory


def test_running_html_is_well_formed():
    html = running_html("q <x>", [], "Thought: partial <b")
    assert "running at step 1" in text_of(html) and "&lt;b" in html and tags(html).count("pre") == 1


# -- annotation: pixels ---------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("key, kind", [("objects", "detect"), ("regions", "dense"), ("lines", "ocr")])
def test_box_edges_have_the_kind_colour_in_rgb(backend, key, kind):
    scene = picture(200, 150)
    art = {key: [{"label": "a", "caption": "a", "text": "a", "confidence": 0.5, "box": [40, 30, 160, 120]}]}
    out = annotate(scene, art, labels=False, backend=backend)
    rgb = np.asarray(out)
    colour = COLOURS[kind]
    for x, y in [(40, 75), (160, 75), (100, 30), (100, 120)]:  # on each edge
        assert tuple(rgb[y, x]) == colour, (x, y)
    assert not (rgb == colour[::-1]).all(axis=-1).any()  # no pixel in BGR order
    for x, y in [(100, 75), (60, 50), (5, 5), (195, 145), (100, 140)]:  # well inside / outside
        assert tuple(rgb[y, x]) == (255, 255, 255), (x, y)
    assert tuple(np.asarray(scene)[30, 100]) == (255, 255, 255)  # the input is untouched


@pytest.mark.parametrize("backend", BACKENDS)
def test_kinds_get_distinct_colours_and_labels_are_drawn(backend):
    out = np.asarray(annotate(picture(), boxes(picture()).artifact, backend=backend))
    assert tuple(out[30, 10]) == COLOURS["detect"]
    assert tuple(out[35, 70]) == COLOURS["dense"]
    assert tuple(out[80, 20]) == COLOURS["ocr"]
    assert len({COLOURS["detect"], COLOURS["dense"], COLOURS["ocr"], COLOURS["other"]}) == 4
    # the detection label sits on a filled patch of its colour just above the box
    above = out[0:9, 10:40].reshape(-1, 3)
    assert (above == COLOURS["detect"]).all(axis=1).sum() > 20
    no_labels = np.asarray(annotate(picture(), boxes(picture()).artifact, labels=False, backend=backend))
    assert (no_labels[0:9, 10:40] == 255).all()


@pytest.mark.skipif(not supervision_available(), reason="supervision not installed")
def test_supervision_on_an_rgb_array_would_swap_colours():
    """The trap the module avoids: supervision's box annotator reads numpy scenes as BGR."""
    import supervision as sv

    det = sv.Detections(xyxy=np.array([[40.0, 30.0, 160.0, 120.0]]), class_id=np.array([0]))
    rgb_array = np.asarray(picture(200, 150)).copy()
    sv.BoxAnnotator(color=sv.Color(*COLOURS["detect"]), thickness=2).annotate(rgb_array, det)
    assert tuple(rgb_array[75, 40]) == COLOURS["detect"][::-1]
    ours = np.asarray(annotate(picture(200, 150), {"objects": [{"label": "a", "box": [40, 30, 160, 120]}]},
                               labels=False, backend="supervision"))
    assert tuple(ours[75, 40]) == COLOURS["detect"]


def test_other_boxes_from_plugins_and_bad_boxes():
    art = {"things": [{"name": "thing", "box": [10, 10, 50, 50]},
                      {"name": "nan", "box": [float("nan"), 0, 5, 5]},
                      {"name": "short", "box": [1, 2, 3]},
                      {"name": "text", "box": ["a", "b", "c", "d"]},
                      {"name": "empty", "box": [20, 20, 20, 40]},
                      "not a dict"],
           "tags": [{"tag": "cat", "score": 0.9}], "caption": "a cat"}
    found = findings(art, 100, 100)
    assert [(f.kind, f.label) for f in found] == [("other", "thing")]
    out = np.asarray(annotate(picture(100, 100), art, labels=False, backend="pil"))
    assert tuple(out[30, 10]) == COLOURS["other"]
    clipped = findings({"objects": [{"label": "big", "box": [-50, -20, 500, 90]}]}, 100, 100)
    assert clipped[0].box == (0.0, 0.0, 99.0, 90.0)
    assert findings([None, Observation.failure("x"), {"objects": "nope"}], 100, 100) == []


def test_annotated_picks_the_calls_on_that_image():
    llm = ScriptedLLM(["Action: boxes(image_1)\nAction: pair(image_1, image_2)\nAction: boxes(image_9)",
                       "Final Answer: done"])
    r = Agent(llm, tools=[boxes, pair]).run("q", [picture(), picture(colour=(0, 0, 0))])
    assert [c.call for c in calls_for(r, "image_1")] == ["boxes(image_1)"]
    assert calls_for(r, "image_2") == []
    first = np.asarray(r.annotated())
    assert tuple(first[30, 10]) == COLOURS["detect"]
    assert np.array_equal(np.asarray(r.annotated("image_2")), np.asarray(picture(colour=(0, 0, 0))))
    with pytest.raises(ConfigError, match="No image 'image_5'"):
        r.annotated("image_5")
    no_images = Agent(ScriptedLLM(["Final Answer: x"]), tools=[]).run("q")
    with pytest.raises(ConfigError, match="no images"):
        no_images.annotated()


def test_annotate_many():
    art = boxes(picture()).artifact
    outs = annotate_many([(picture(), art), (picture(100, 100), {})], progress=False)
    assert [o.size for o in outs] == [(200, 120), (100, 100)]
    assert tuple(np.asarray(outs[0])[30, 10]) == COLOURS["detect"]


# -- live --------------------------------------------------------------------------------------------
def test_live_prints_steps_outside_a_notebook(capsys):
    agent = Agent(ScriptedLLM(["Thought: t\nAction: boxes(image_1)", "Final Answer: cat"]), tools=[boxes])
    r = live(agent, "what?", [picture()])
    out = capsys.readouterr().out
    assert r.answer == "cat"
    assert out.index("Step 1") < out.index("Action: boxes(image_1)") < out.index("Step 2") < out.index("Answer: cat")
    chat = Agent(ScriptedLLM(["Final Answer: one", "Final Answer: two"]), tools=[]).chat()
    live(chat, "a?")
    live(chat, "b?")
    assert [t.answer for t in chat.turns] == ["one", "two"]


# -- the command line ------------------------------------------------------------------------------------
PLUGIN = '''
from mmreact import Image, Observation, tool

@tool
def dark_box(image: Image) -> Observation:
    """Box around the dark pixels."""
    import numpy as np
    ys, xs = np.nonzero(image.to_numpy().max(axis=2) < 100)
    box = [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]
    return Observation(text=f"dark at {box}", artifact={"objects": [{"label": "dark", "confidence": 1.0, "box": box}]})
'''


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory):
    root = tmp_path_factory.mktemp("display_plugin")
    (root / "mmreact_display_plugin.py").write_text(PLUGIN)
    info = root / "mmreact_display_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mmreact_display_plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[mmreact.tools]\ndark = mmreact_display_plugin:dark_box\n")
    image = root / "square.png"
    img = picture(120, 90)
    img.paste((10, 10, 10), (30, 20, 80, 70))
    img.save(image)
    replies = root / "replies.json"
    replies.write_text('["Action: dark_box(image_1)", "Final Answer: a square"]')
    env = dict(os.environ, PYTHONPATH=str(root) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return {"env": env, "image": str(image), "llm": f"scripted:{replies}"}


def cli(cli_env, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mmreact", *args], capture_output=True, text=True,
                          env=cli_env["env"], timeout=120, cwd=ROOT)


def assert_box_drawn(path: Path) -> None:
    out = PILImage.open(path)
    assert out.format == "PNG" and out.size == (120, 90)
    assert tuple(np.asarray(out.convert("RGB"))[45, 30]) == COLOURS["detect"]


def test_cli_ask_save_annotated(cli_env, tmp_path):
    out = tmp_path / "ask.png"
    proc = cli(cli_env, "ask", cli_env["image"], "What is it?", "--llm", cli_env["llm"], "--tools", "dark_box",
               "--save-annotated", str(out))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "a square"
    assert_box_drawn(out)


def test_cli_experts_save_annotated(cli_env, tmp_path):
    out = tmp_path / "experts"  # no extension: PNG
    proc = cli(cli_env, "experts", cli_env["image"], "--tools", "dark_box", "--save-annotated", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "dark at [30, 20, 80, 70]" in proc.stdout
    assert_box_drawn(out)


@pytest.mark.parametrize("target, fragment", [("nowhere/x.png", "does not exist"), ("x.weird", "Cannot save")])
def test_cli_bad_save_path_is_one_line_before_any_work(cli_env, tmp_path, target, fragment):
    proc = cli(cli_env, "ask", cli_env["image"], "q", "--llm", "scripted:/does/not/exist.json",
               "--save-annotated", str(tmp_path / target))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and fragment in lines[0], proc.stderr
