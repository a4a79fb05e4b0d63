"""`mmreact demo`: the Gradio chat driven through gradio_client (in-process agent and against a running
`mmreact serve`), the conversation mapping, and once in headless Chromium (Debian's `chromium`)."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

gr = pytest.importorskip("gradio")
pytest.importorskip("gradio_client")
pytest.importorskip("fastapi")

from gradio_client import Client, handle_file  # noqa: E402
from PIL import Image as PILImage  # noqa: E402

from mmreact import Agent, Image, Observation, ScriptedLLM, tool  # noqa: E402
from mmreact.serve import create_app  # noqa: E402
from mmreact.serve.demo import build_demo, offline_theme, openai_messages  # noqa: E402
from serve_helpers import hash_planner, image_array, make_hash_tool, png_bytes, running, sha  # noqa: E402
from servers import free_port  # noqa: E402

BOX = [2, 2, 10, 9]


@tool
def find_square(image: Image) -> Observation:
    """Find the square in the image."""
    return Observation(text=f"hash={image.sha256}\nsquare at {BOX}",
                       artifact={"objects": [{"label": "square", "confidence": 0.9, "box": BOX}]})


def square_planner(request):
    if request.messages[-1].role == "observation":
        return "Thought: found it.\nFinal Answer: " + request.messages[-1].content.split("hash=")[1].split()[0]
    return "Thought: look for it.\nAction: find_square(image_1)"


@contextlib.contextmanager
def launched(demo) -> Iterator[str]:
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, ssr_mode=False,
                theme=offline_theme())
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


@pytest.fixture
def picture(tmp_path) -> tuple[Path, str]:
    array = image_array(7, size=(24, 32))
    path = tmp_path / "picture.png"
    path.write_bytes(png_bytes(array))
    return path, sha(array)


def final_messages(client: Client, path: Path, text: str) -> list[dict]:
    return client.predict(message={"text": text, "files": [handle_file(str(path))]}, api_name="/chat")


def test_demo_in_process_shows_tool_calls_answer_and_boxes(picture):
    path, digest = picture
    demo = build_demo(Agent(ScriptedLLM([square_planner], repeat_last=True), tools=[find_square]))
    with launched(demo) as url:
        client = Client(url, verbose=False)
        out = final_messages(client, path, "Where is the square?")
        steps = [m for m in out if m["metadata"].get("title")]
        # the call, then the answer's grounding check, folded (the digest is no fact the tool saw)
        assert [m["metadata"]["title"] for m in steps] == ["find_square(image_1)",
                                                           f"Grounding (check): 1 of 1 fact unsupported: '{digest}'"]
        assert steps[0]["metadata"]["status"] == "done" and "square at [2, 2, 10, 9]" in steps[0]["content"]
        plain = [m["content"] for m in out if not m["metadata"].get("title")]
        assert plain[0] == digest
        assert len(plain) == 2 and plain[1].endswith(".png")  # the picture with the boxes, from Gradio's cache
        drawn = PILImage.open(plain[1]).convert("RGB")
        original = PILImage.open(path).convert("RGB")
        assert drawn.size == original.size and drawn.getpixel((BOX[0], 5)) != original.getpixel((BOX[0], 5))
        # streaming: the first update is the pending plan, a tool call shows before the answer
        updates = list(client.submit(message={"text": "Where?", "files": [handle_file(str(path))]}, api_name="/chat"))
        assert updates[0][0]["metadata"]["status"] == "pending"
        first_call = next(i for i, u in enumerate(updates) if any(m["metadata"].get("title") == "find_square(image_1)"
                                                                 for m in u))
        first_answer = next(i for i, u in enumerate(updates) if any(m["content"] == digest for m in u))
        assert first_call < first_answer


def test_demo_against_a_running_server(picture):
    path, digest = picture
    agent = Agent(ScriptedLLM([hash_planner], repeat_last=True), tools=[make_hash_tool()])
    with running(create_app(agent)) as base, launched(build_demo(server=f"{base}/v1")) as url:
        out = final_messages(Client(url, verbose=False), path, "hash?")
        assert [m["metadata"]["title"] for m in out if m["metadata"].get("title")] == [
            "image_hash(image_1)", "Grounding (check): 1 fact, all supported; object words not checked (no expert saw objects)"]
        assert [m["content"] for m in out if not m["metadata"].get("title")] == [digest]


def test_demo_shows_server_errors_as_a_message(picture):
    path, _ = picture
    agent = Agent(ScriptedLLM([hash_planner], repeat_last=True), tools=[make_hash_tool()])
    with running(create_app(agent)) as base, launched(build_demo(server=f"{base}/v1", model="other")) as url:
        out = final_messages(Client(url, verbose=False), path, "hash?")
        assert out[-1]["content"].startswith("Error: The model 'other' does not exist")


def test_a_corrupt_upload_is_reported_once_by_name_and_the_chat_goes_on(picture, tmp_path):
    """One corrupt upload used to make every later question of the chat fail ("The image in
    messages[2].content[1] is truncated or corrupt"): it is named once and left out from then on."""
    path, digest = picture
    broken = tmp_path / "holiday.png"
    broken.write_bytes(path.read_bytes()[:300])  # a PNG cut short
    prompts: list[str] = []

    def planner(request):
        prompts.append(request.messages[-1].content)
        return square_planner(request)

    demo = build_demo(Agent(ScriptedLLM([planner], repeat_last=True), tools=[find_square]))
    with launched(demo) as url:
        client = Client(url, verbose=False)
        (reply,) = final_messages(client, broken, "What is in my holiday photo?")
        assert reply["content"].startswith("Error: holiday.png is truncated or corrupt (")
        assert reply["content"].endswith("It is left out of this chat: upload the image again, or another one, and ask.")
        assert prompts == []  # nothing ran for that turn
        out = final_messages(client, path, "Where is the square?")  # the chat goes on, with the good image
        assert [m["metadata"]["title"] for m in out if m["metadata"].get("title")] == [
            "find_square(image_1)", f"Grounding (check): 1 of 1 fact unsupported: '{digest}'"]
        assert [m["content"] for m in out if not m["metadata"].get("title")][0] == digest
        again = client.predict(message={"text": "And once more?", "files": []}, api_name="/chat")
        answers = [m["content"] for m in again if not m["metadata"].get("title")]
        assert answers[0] == digest  # the same image_1: the broken upload is never an image
    assert not any("holiday.png" in p or "Error:" in p for p in prompts), prompts  # nor replayed as context


def test_upload_problem_names_the_file_not_the_upload_folder(tmp_path):
    from mmreact.serve.demo import upload_problem

    folder = tmp_path / "gradio" / "0123abcd"
    folder.mkdir(parents=True)
    empty, text, good = folder / "empty.png", folder / "notes.png", folder / "fine.png"
    empty.write_bytes(b"")
    text.write_text("not a picture")
    good.write_bytes(png_bytes(image_array(3)))
    assert upload_problem(str(empty)) == "empty.png is empty (0 bytes), not an image."
    assert upload_problem(str(text)) == "notes.png is not an image file PIL can read."
    assert upload_problem(str(good)) is None
    assert upload_problem(str(folder / "gone.png")) == "gone.png cannot be read (No such file or directory)."


def test_gradio_history_becomes_openai_messages(tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    a.write_bytes(png_bytes(image_array(1)))
    b.write_bytes(png_bytes(image_array(2)))
    history = [
        {"role": "user", "content": [{"type": "file", "file": {"path": str(a)}}], "metadata": None},
        {"role": "user", "content": [{"type": "text", "text": "What is it?"}], "metadata": None},
        {"role": "assistant", "content": [{"type": "text", "text": "```ocr```"}], "metadata": {"title": "ocr(image_1)"}},
        {"role": "assistant", "content": [{"type": "text", "text": "A receipt."}], "metadata": None},
        {"role": "assistant", "content": [{"type": "component", "component": "image", "value": {}}], "metadata": None},
    ]
    messages, files = openai_messages({"text": "And this?", "files": [str(b)]}, history)
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert [p["type"] for p in messages[0]["content"]] == ["image_url", "text"]
    assert messages[1]["content"] == "A receipt."
    assert messages[2]["content"][0] == {"type": "text", "text": "And this?"}
    assert messages[2]["content"][1]["image_url"]["url"].startswith("data:image/png;base64,")
    assert files == [str(a), str(b)]


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")
def test_demo_in_headless_chromium(picture):
    sync_api = pytest.importorskip("playwright.sync_api")
    path, digest = picture
    demo = build_demo(Agent(ScriptedLLM([square_planner], repeat_last=True), tools=[find_square]))
    with launched(demo) as url, sync_api.sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
        browser = p.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, viewport={"width": 1100, "height": 900},
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"])
        try:
            page = browser.new_page()
            page.goto(url, wait_until="load")
            box = page.get_by_placeholder("Ask about the images...")
            box.wait_for(timeout=60_000)
            page.set_input_files("input[type=file]", str(path))
            box.fill("Where is the square?")
            page.keyboard.press("Enter")
            page.get_by_text(digest).first.wait_for(timeout=60_000)
            page.get_by_text("find_square(image_1)").first.click()  # open the tool call
            page.get_by_text("square at [2, 2, 10, 9]").first.wait_for(timeout=10_000)
            page.locator("img[src*='/mmreact-demo-'][src*='image_1-']").first.wait_for(timeout=10_000)  # the boxes
        finally:
            browser.close()


def test_cli_demo_bad_llm_spec_is_one_line():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "mmreact", "demo", "--llm", "bogus:x", "--port", str(free_port())],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "Unknown LLM spec" in out.stderr and "Traceback" not in out.stderr
