"""``mmreact pull`` and ``mmreact tools`` as real subprocesses, against a hub on 127.0.0.1: the real
``huggingface_hub`` client fetches tiny random checkpoints, the next ``mmreact ask`` uses them with the
network switched off, a second pull downloads nothing, an interrupted pull is never taken for ready,
and the tools table fits 80 columns."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from weights_env import JUNK, FakeHub, SilentHub, build_checkpoints, closed_port, online_env

ROOT = Path(__file__).resolve().parents[1]
ASTRONAUT = Path(__import__("skimage").__file__).parent / "data" / "astronaut.png"
CAPTION_FILES = ["config.json", "generation_config.json", "model.safetensors", "processor_config.json",
                 "tokenizer.json", "tokenizer_config.json"]


def mmreact(env: dict[str, str], *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mmreact", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=ROOT)


def one_line_error(proc: subprocess.CompletedProcess, fragment: str, code: int) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and fragment in lines[0] and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def words(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    pytest.importorskip("transformers")
    return build_checkpoints(tmp_path_factory.mktemp("checkpoints"))


@pytest.fixture
def hub(checkpoints: dict[str, Path]):
    with FakeHub() as h:
        for name, folder in checkpoints.items():
            h.add_repo(f"mmreact-test/{name}", folder, {**JUNK, "pytorch_model.bin": b"PK" + b"0" * 2000})
        yield h


def scripted(tmp_path: Path, replies: list[str]) -> str:
    path = tmp_path / "replies.json"
    path.write_text(json.dumps(replies))
    return f"scripted:{path}"


def test_pull_then_ask_uses_it_and_a_second_pull_downloads_nothing(hub: FakeHub, tmp_path: Path,
                                                                   checkpoints: dict[str, Path]) -> None:
    env = online_env(tmp_path, hub.url, MMREACT_CAPTION_MODEL="mmreact-test/caption")
    files = hub.repos["mmreact-test/caption"].files
    size = sum(len(files[n]) for n in CAPTION_FILES)

    listed = json.loads(mmreact(env, "tools", "--json").stdout)
    caption = next(t for t in listed["tools"] if t["name"] == "caption")
    assert caption["status"] == "download" and caption["ready"] and caption["download_bytes"] == size

    dry = mmreact(env, "pull", "caption", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines()[0] == (f"caption: BLIP captioning weights 'mmreact-test/caption': 6 files, "
                                          f"{size / 1000:.0f} kB to download ({hub.url}/mmreact-test/caption)")
    assert [ln.split()[0] for ln in dry.stdout.splitlines()[1:]] == CAPTION_FILES
    assert hub.downloads() == []

    pulled = mmreact(env, "pull", "caption")
    assert pulled.returncode == 0, pulled.stderr
    assert "mmreact: downloading the BLIP captioning weights 'mmreact-test/caption'" in pulled.stderr
    ready = pulled.stdout.splitlines()[-1]
    assert ready.startswith("caption: ready: ")
    folder = Path(ready.removeprefix("caption: ready: "))
    assert folder.is_relative_to(tmp_path / "hf" / "hub")
    assert sorted(hub.downloads()) == CAPTION_FILES  # no README, .h5, .bin, .msgpack or onnx/
    assert sha256(folder / "model.safetensors") == sha256(checkpoints["caption"] / "model.safetensors")

    llm = scripted(tmp_path, ["Thought: look.\nAction: caption(image_1)", "Final Answer: a picture"])
    asked = mmreact({**env, "HF_HUB_OFFLINE": "1"}, "ask", str(ASTRONAUT), "What is in this picture?", "--llm", llm,
                    "--tools", "caption", "--json")
    assert asked.returncode == 0, asked.stderr
    (call,) = json.loads(asked.stdout)["steps"][0]["calls"]
    assert not call["error"] and "\nCaption: " in call["text"], call

    before = list(hub.log)
    again = mmreact(env, "pull", "caption")
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[0].endswith(f"nothing to download (6 files here) ({hub.url}/mmreact-test/caption)")
    assert sorted(hub.downloads()) == CAPTION_FILES and all(r.method != "GET" or "/resolve/" not in r.path
                                                    for r in hub.log[len(before):])


def test_an_interrupted_pull_is_never_ready_and_the_next_pull_completes(hub: FakeHub, tmp_path: Path,
                                                                        checkpoints: dict[str, Path]) -> None:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    env = online_env(tmp_path, hub.url, MMREACT_CAPTION_MODEL="mmreact-test/caption")
    weights = hub.repos["mmreact-test/caption"].files["model.safetensors"]
    hub.stall("model.safetensors", at=len(weights) // 2)
    proc = subprocess.Popen([sys.executable, "-m", "mmreact", "pull", "caption"], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    snapshots_dir = tmp_path / "hf" / "hub" / "models--mmreact-test--caption" / "snapshots"
    try:
        assert hub.stalled.wait(120), "the download never reached the model weights"
        for _ in range(600):  # the small files download alongside; wait until config.json is in place
            if list(snapshots_dir.glob("*/config.json")):
                break
            time.sleep(0.05)
    finally:
        proc.kill()  # like a closed laptop lid: no clean-up runs
        proc.communicate(timeout=60)
    snapshots = list(snapshots_dir.iterdir())
    assert len(snapshots) == 1 and (snapshots[0] / "config.json").is_file()  # what readiness used to look for
    assert not (snapshots[0] / "model.safetensors").exists()

    offline = {**env, "HF_HUB_OFFLINE": "1"}
    listed = {t["name"]: t for t in json.loads(mmreact(offline, "tools", "--json").stdout)["tools"]}
    assert listed["caption"]["status"] == "offline" and not listed["caption"]["ready"]
    assert ("'mmreact-test/caption' are incomplete on this machine (model.safetensors is missing)"
            in listed["caption"]["missing"])
    with pytest.raises(LocalEntryNotFoundError):  # the hub client's own view agrees
        snapshot_download("mmreact-test/caption", cache_dir=tmp_path / "hf" / "hub", local_files_only=True)

    hub.release()
    pulled = mmreact(env, "pull", "caption")
    assert pulled.returncode == 0, pulled.stderr
    assert re.search(r": [1-5] of 6 files, ", pulled.stdout)  # what arrived before the interruption is kept
    assert sha256(snapshots[0] / "model.safetensors") == sha256(checkpoints["caption"] / "model.safetensors")
    listed = {t["name"]: t for t in json.loads(mmreact(offline, "tools", "--json").stdout)["tools"]}
    assert listed["caption"]["status"] == "ready" and listed["caption"]["weights"] == str(snapshots[0])


def test_tools_fits_80_columns(hub: FakeHub, tmp_path: Path) -> None:
    env = online_env(tmp_path, hub.url, COLUMNS="80", MMREACT_CAPTION_MODEL="mmreact-test/caption",
                     MMREACT_TAGS_MODEL="mmreact-test/tags", MMREACT_DENSE_MODEL="mmreact-test/absent")
    data = json.loads(mmreact(env, "tools", "--json").stdout)
    rows = {t["name"]: t for t in data["tools"]}
    assert set(rows["caption"]) >= {"name", "origin", "ready", "status", "weights", "download_bytes", "missing",
                                    "usage", "description"}
    for variant in ({}, {"HF_HUB_OFFLINE": "1"}):
        proc = mmreact({**env, **variant}, "tools")
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.splitlines()
        assert max(len(ln) for ln in lines) <= 80, "\n".join(ln for ln in lines if len(ln) > 80)
        assert lines[0].split() == ["tool", "status", "description"]
        table = lines[1:1 + len(rows)]
        assert [ln.split()[0] for ln in table] == list(rows)  # one line per tool
        by_name = {ln.split()[0]: ln for ln in table}
        if variant:
            assert all(by_name[n].split()[1] == "offline" for n in ("caption", "dense_caption", "tags", "detect"))
        else:
            assert f"not downloaded ({rows['caption']['download_bytes'] / 1000:.0f} kB)" in by_name["caption"]
            assert by_name["dense_caption"].split()[1:3] == ["not", "downloaded"]  # no such repo: no size to show
            assert by_name["detect"].split()[1] == "offline"  # its URL is a closed loopback port
        assert by_name["ocr"].split()[1] == "ready"
        notes = words("\n".join(lines[1 + len(rows):]))
        missing = json.loads(mmreact({**env, **variant}, "tools", "--json").stdout)["tools"]
        for row in missing:
            if row["missing"]:
                assert f"{row['name']}: {words(row['missing'])}" in notes
    verbose = mmreact(env, "tools", "--verbose")
    assert verbose.returncode == 0 and max(len(ln) for ln in verbose.stdout.splitlines()) <= 80
    assert words(rows["dense_caption"]["description"]) in words(verbose.stdout)
    assert "usage: tags(image: image, top_k: int = 10)" in verbose.stdout


def test_pull_mistakes_are_one_line(hub: FakeHub, tmp_path: Path) -> None:
    env = online_env(tmp_path, hub.url)
    one_line_error(mmreact(env, "pull", "teleport"), "Unknown expert 'teleport'; choose among caption,", 2)
    one_line_error(mmreact({**env, "MMREACT_OFFLINE": "1"}, "pull"),
                   "MMREACT_OFFLINE=1 turns downloads off: unset it to pull weights.", 2)
    one_line_error(mmreact(env, "pull", "--llm", "gguf:model.gguf"), "--llm takes hf:MODEL_ID", 2)
    one_line_error(mmreact({**env, "MMREACT_CAPTION_MODEL": "mmreact-test/absent"}, "pull", "caption"),
                   f"mmreact: caption: There is no model 'mmreact-test/absent' on {hub.url}", 1)
    closed = f"http://127.0.0.1:{closed_port()}"
    one_line_error(mmreact({**env, "HF_ENDPOINT": closed}, "pull", "tags"),
                   f"mmreact: tags: {closed} cannot be reached from here, so the CLIP tagging weights", 1)


# -- a hub that hangs ----------------------------------------------------------------------------
def test_tools_does_not_wait_for_a_hub_that_never_answers(tmp_path: Path) -> None:
    """The hub accepts and trickles a status line forever (no read ever times out), and a metadata
    request may wait 300 s: the table still comes after the 8 s the size lookups get, sizes left out."""
    from mmreact.tools.status import SIZE_TIMEOUT

    with SilentHub(trickle=0.5) as silent:
        env = online_env(tmp_path, silent.url, MMREACT_HUB_TIMEOUT="300", MMREACT_DETECT_MODEL=f"{silent.url}/y.pt")
        started = time.monotonic()
        proc = mmreact(env, "tools", "--json", timeout=SIZE_TIMEOUT + 60)  # a process that waits 300 s fails here
        took = time.monotonic() - started
        assert silent.accepted >= 3  # the lookups did go out (caption, dense_caption, tags; detect's HEAD)
    assert proc.returncode == 0, proc.stderr
    rows = {t["name"]: t for t in json.loads(proc.stdout)["tools"]}
    for name in ("caption", "dense_caption", "tags", "detect"):
        assert rows[name]["status"] == "download" and rows[name]["download_bytes"] is None, rows[name]
    print(f"mmreact tools against a hub that never answers: {took:.1f} s (size lookups get {SIZE_TIMEOUT:g} s)")


def test_first_use_gives_up_on_a_hub_that_never_answers(tmp_path: Path) -> None:
    """The hub accepts and never answers: the first use waits MMREACT_HUB_TIMEOUT in all (here 2 s; the
    hub client's own registry request and read timeouts are not added), then the run goes on."""
    llm = scripted(tmp_path, ["Thought: look.\nAction: caption(image_1)", "Final Answer: no caption"])
    with SilentHub() as silent:
        env = online_env(tmp_path, silent.url, MMREACT_HUB_TIMEOUT="2")
        proc = mmreact(env, "ask", str(ASTRONAUT), "What is it?", "--llm", llm, "--tools", "caption", "--json",
                       "--prefetch", "none", timeout=120)
    assert proc.returncode == 0, proc.stderr
    (call,) = json.loads(proc.stdout)["steps"][0]["calls"]
    assert call["error"], call
    assert (f"{silent.url} did not answer within 2 s, so the BLIP captioning weights "
            "'Salesforce/blip-image-captioning-large' cannot be downloaded now") in call["text"]
    print(f"first use against a hub that never answers, MMREACT_HUB_TIMEOUT=2: the call took {call['seconds']:.1f} s")


def test_a_download_that_stalls_is_abandoned_and_the_next_pull_goes_on(hub: FakeHub, tmp_path: Path,
                                                                      checkpoints: dict[str, Path]) -> None:
    """The weights stop arriving near their end and the connection stays open (the client's own read
    timeout is set to 600 s): the first use gives up after MMREACT_STALL_TIMEOUT without data, leaves no
    partial file behind (the hub client never resumes another run's), and the next pull completes."""
    weights = hub.repos["mmreact-test/caption"].files["model.safetensors"]
    hub.stall("model.safetensors", at=len(weights) - 1000)
    env = online_env(tmp_path, hub.url, MMREACT_CAPTION_MODEL="mmreact-test/caption", MMREACT_STALL_TIMEOUT="2",
                     HF_HUB_DOWNLOAD_TIMEOUT="600")
    llm = scripted(tmp_path, ["Thought: look.\nAction: caption(image_1)", "Final Answer: no caption"])
    proc = mmreact(env, "ask", str(ASTRONAUT), "What is it?", "--llm", llm, "--tools", "caption", "--json",
                   "--prefetch", "none", timeout=100)  # without the bound it waits for the hub's 120 s
    assert proc.returncode == 0, proc.stderr
    (call,) = json.loads(proc.stdout)["steps"][0]["calls"]
    assert call["error"], call
    assert ("The download of the BLIP captioning weights 'mmreact-test/caption' from "
            f"{hub.url} stalled (nothing arrived for 2 s): run `mmreact pull caption` to try again") in call["text"]
    assert not list((tmp_path / "hf" / "hub").rglob("*.incomplete"))

    hub.release()
    pulled = mmreact(env, "pull", "caption")
    assert pulled.returncode == 0, pulled.stderr
    folder = Path(pulled.stdout.splitlines()[-1].removeprefix("caption: ready: "))
    assert sha256(folder / "model.safetensors") == sha256(checkpoints["caption"] / "model.safetensors")


@pytest.fixture(scope="module")
def yolo_pt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("ultralytics")
    path = tmp_path_factory.mktemp("yolo") / "yolo-tiny.pt"
    code = ("import os; os.environ['YOLO_OFFLINE'] = '1'\nfrom ultralytics import YOLO\n"
            f"YOLO('yolo11n.yaml').save({str(path)!r})\n")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=300, cwd=path.parent)
    return path


@pytest.mark.slow
def test_the_internet_path_pull_everything_then_ask_with_all_five(hub: FakeHub, tmp_path: Path,
                                                                  yolo_pt: Path) -> None:
    """The getting-started page's (docs/index.md) `mmreact pull` block against the loopback hub: ``mmreact pull`` fetches every expert's
    weights (hub checkpoints and a YOLO file through ultralytics), then a question uses all five."""
    url = hub.add_file("yolo-tiny.pt", yolo_pt.read_bytes())
    env = online_env(tmp_path, hub.url, MMREACT_CAPTION_MODEL="mmreact-test/caption",
                     MMREACT_DENSE_MODEL="mmreact-test/dense_caption", MMREACT_TAGS_MODEL="mmreact-test/tags",
                     MMREACT_DETECT_MODEL=url, MMREACT_DEVICE="cpu")
    pulled = mmreact(env, "pull", timeout=600)
    assert pulled.returncode == 0, pulled.stderr
    ready = [ln.split(":")[0] for ln in pulled.stdout.splitlines() if ": ready: " in ln]
    assert ready == ["caption", "dense_caption", "tags", "detect", "ocr"]
    offline = {**env, "HF_HUB_OFFLINE": "1"}
    listed = json.loads(mmreact(offline, "tools", "--json").stdout)["tools"]
    assert [t["status"] for t in listed] == ["ready"] * 5
    actions = "\n".join(f"Action: {n}(image_1)" for n in ("caption", "dense_caption", "tags", "detect", "ocr"))
    llm = scripted(tmp_path, [f"Thought: look at everything.\n{actions}", "Final Answer: a person"])
    asked = mmreact(offline, "ask", str(ASTRONAUT), "What is in this picture?", "--llm", llm, "--json", timeout=600)
    assert asked.returncode == 0, asked.stderr
    calls = json.loads(asked.stdout)["steps"][0]["calls"]
    assert [c["tool"] for c in calls] == ["caption", "dense_caption", "tags", "detect", "ocr"]
    assert [c["error"] for c in calls] == [False] * 5, [c["text"] for c in calls]


@pytest.mark.slow
def test_readme_first_command_without_a_network(tmp_path: Path) -> None:
    """The README's first command with no offline switch set and every endpoint unreachable: the probe
    finds that out, the tools without weights are left out, and the embedded LLM reads the receipt."""
    env = online_env(tmp_path, f"http://127.0.0.1:{closed_port()}")
    assert "HF_HUB_OFFLINE" not in env and "MMREACT_OFFLINE" not in env
    proc = mmreact(env, "ask", "examples/receipt.png", "What is the total on this receipt?", "--verbose",
                   timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "7.75" in proc.stdout
    assert "tools: ocr" in proc.stderr and "downloading" not in proc.stderr
    assert os.path.isdir(tmp_path / "hf") is False  # nothing was fetched or cached
