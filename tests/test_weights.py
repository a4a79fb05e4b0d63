"""Weights on demand, in process: completeness, the offline switches and probe, first-use downloads
through the real ``huggingface_hub`` client, ultralytics' and EasyOCR's downloaders, all against a
hub on 127.0.0.1 (``fake_hub.py``) serving tiny random checkpoints of the real architectures."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import struct
import threading
import zipfile
from pathlib import Path

import pytest
from weights_env import JUNK, FakeHub, build_checkpoints, closed_port, go_online

from mmreact import Agent, ConfigError, ScriptedLLM, WeightsMissingError
from mmreact.experts.caption import CaptionTool
from mmreact.experts.detect import DetectTool
from mmreact.experts.ocr import OCRTool
from mmreact.experts.tags import TagsTool
from mmreact.tools.registry import resolve_tools
from mmreact.weights import Plan, human_size, policy
from mmreact.weights.hub import EXPERT_NEEDS, missing_parts, safetensors_whole, select_files
from mmreact.weights.pull import pull_targets, run_pull

ASTRONAUT = Path(__import__("skimage").__file__).parent / "data" / "astronaut.png"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    pytest.importorskip("transformers")
    return build_checkpoints(tmp_path_factory.mktemp("checkpoints"))


@pytest.fixture
def hub(checkpoints: dict[str, Path], request: pytest.FixtureRequest):
    """The loopback hub; repository ids are unique per test (models are shared per process by id)."""
    tag = hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:8]
    with FakeHub() as h:
        h.ids = {name: f"mmreact-test/{name}-{tag}" for name in checkpoints}  # type: ignore[attr-defined]
        for name, folder in checkpoints.items():
            h.add_repo(h.ids[name], folder, {**JUNK, "pytorch_model.bin": b"PK" + b"0" * 2000})  # type: ignore[attr-defined]
        yield h


# -- what a checkpoint needs -------------------------------------------------------------------
@pytest.mark.parametrize("names, expected", [
    # Salesforce/blip-image-captioning-large as listed on the hub: three copies of the weights
    (["config.json", "model.safetensors", "preprocessor_config.json", "pytorch_model.bin", "special_tokens_map.json",
      "tf_model.h5", "tokenizer.json", "tokenizer_config.json", "vocab.txt", "README.md", ".gitattributes"],
     ["config.json", "model.safetensors", "preprocessor_config.json", "special_tokens_map.json", "tokenizer.json",
      "tokenizer_config.json", "vocab.txt"]),
    # sharded safetensors beside a consolidated copy and the .bin index: only the shards and their index
    (["config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
      "model.safetensors.index.json", "consolidated.safetensors", "pytorch_model.bin.index.json",
      "tokenizer.model", "generation_config.json", "onnx/model.onnx", "modeling_x.py"],
     ["config.json", "generation_config.json", "model-00001-of-00002.safetensors",
      "model-00002-of-00002.safetensors", "model.safetensors.index.json", "tokenizer.model"]),
    # PyTorch weights only
    (["config.json", "pytorch_model.bin", "vocab.json", "merges.txt", "flax_model.msgpack"],
     ["config.json", "merges.txt", "pytorch_model.bin", "vocab.json"]),
])
def test_select_files_picks_what_transformers_needs(names: list[str], expected: list[str]) -> None:
    assert select_files(names) == expected


def _safetensors(path: Path, nbytes: int) -> Path:
    header = json.dumps({"w": {"dtype": "U8", "shape": [nbytes], "data_offsets": [0, nbytes]}}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + bytes(nbytes))
    return path


def test_a_partial_checkpoint_is_never_complete(tmp_path: Path, checkpoints: dict[str, Path]) -> None:
    folder = shutil.copytree(checkpoints["caption"], tmp_path / "blip")
    assert missing_parts(folder, EXPERT_NEEDS) is None
    assert CaptionTool(model=str(folder)).resolved_weights() == str(folder)

    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])  # an interrupted copy
    assert not safetensors_whole(weights)
    assert missing_parts(folder, EXPERT_NEEDS) == "model.safetensors is incomplete"
    tool = CaptionTool(model=str(folder))
    assert tool.resolved_weights() is None
    message = tool.check()
    assert message and "incomplete (model.safetensors is incomplete)" in message and "\n" not in message
    with pytest.raises(WeightsMissingError, match="incomplete"):
        tool.ensure_ready()

    weights.unlink()
    assert missing_parts(folder, EXPERT_NEEDS) == "model.safetensors is missing"
    weights.write_bytes(data)
    (folder / "processor_config.json").unlink()
    assert missing_parts(folder, EXPERT_NEEDS) == "preprocessor_config.json is missing"
    assert missing_parts(folder, ("config", "weights")) is None  # an LLM-style need list does not ask for it

    sharded = tmp_path / "sharded"
    sharded.mkdir()
    (sharded / "config.json").write_text("{}")
    (sharded / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}))
    _safetensors(sharded / "model-00001-of-00002.safetensors", 64)
    assert missing_parts(sharded) == "model-00002-of-00002.safetensors is missing"
    _safetensors(sharded / "model-00002-of-00002.safetensors", 64)
    assert missing_parts(sharded) is None
    assert missing_parts(sharded, expected={"config.json": 2, "extra.json": None}) == "extra.json is missing"
    assert missing_parts(sharded, expected={"config.json": 3}) == "config.json is incomplete"


def test_policy_reads_the_switches(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "MMREACT_OFFLINE", "MMREACT_ALLOW_DOWNLOAD"):
        monkeypatch.delenv(name, raising=False)
    assert policy.offline_switch() is None and policy.first_use() == "auto"
    monkeypatch.setenv("MMREACT_OFFLINE", "1")
    assert policy.offline_switch() == "MMREACT_OFFLINE=1"
    monkeypatch.setenv("MMREACT_ALLOW_DOWNLOAD", "1")
    assert not policy.may_download("http://127.0.0.1:9/x")  # an offline switch wins over ALLOW_DOWNLOAD=1
    monkeypatch.delenv("MMREACT_OFFLINE")
    monkeypatch.setattr(policy, "_probes", {})
    assert policy.may_download("http://127.0.0.1:9/x") and policy._probes == {}  # =1: no probe at all
    monkeypatch.setenv("MMREACT_ALLOW_DOWNLOAD", "0")
    assert policy.first_use() == "off" and not policy.may_download("http://127.0.0.1:9/x")
    assert [human_size(n) for n in (512, 271_000, 990_000_000, 1_880_000_000, None)] == [
        "512 B", "271 kB", "990 MB", "1.9 GB", "size unknown"]


# -- without a network --------------------------------------------------------------------------
class Sockets:
    """Records every name lookup and connection attempt (and lets them through to pytest-socket)."""

    def __init__(self, mp: pytest.MonkeyPatch) -> None:
        self.attempts: list[str] = []
        for name in ("getaddrinfo", "create_connection"):
            real = getattr(socket, name)
            mp.setattr(socket, name, self._record(name, real))

    def _record(self, name, real):  # noqa: ANN001, ANN202
        def recorded(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            self.attempts.append(f"{name}{args[:1]}")
            return real(*args, **kwargs)
        return recorded


DEFAULTS = ("caption", "dense_caption", "tags", "detect")


@pytest.mark.parametrize("switch", ["HF_HUB_OFFLINE", "MMREACT_OFFLINE"])
def test_an_offline_switch_opens_no_socket(switch: str, socket_disabled: None, monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "MMREACT_OFFLINE", "MMREACT_ALLOW_DOWNLOAD",
                 "MMREACT_CAPTION_MODEL", "MMREACT_DENSE_MODEL", "MMREACT_TAGS_MODEL", "MMREACT_DETECT_MODEL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(switch, "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("MMREACT_WEIGHTS_DIR", str(tmp_path / "weights"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(policy, "_probes", {})
    monkeypatch.setattr("mmreact.tools.registry._discovered", None)
    with pytest.MonkeyPatch.context() as mp:  # undone before pytest-socket lifts its guard
        sockets = Sockets(mp)

        tools = {t.name: t for t in resolve_tools(None)}
        for name in DEFAULTS:
            status = tools[name].weights_status()
            assert status.state == "offline", (name, status)
            assert status.message and f"{switch}=1 turns downloads off" in status.message and "\n" not in status.message
            assert f"`mmreact pull {name}`" in status.message
            with pytest.raises(WeightsMissingError) as info:
                tools[name].ensure_weights()
            assert str(info.value) == status.message
        assert [t.name for t in Agent(ScriptedLLM(["Final Answer: x"])).tools] == ["ocr"]
        with pytest.raises(ConfigError, match=f"{switch}=1 turns downloads off"):
            run_pull(pull_targets(["caption"]))
        with pytest.raises(WeightsMissingError, match="turns downloads off"):
            tools["caption"].weights().fetch()
        from mmreact.tools.status import tool_rows

        rows = {r["name"]: r for r in tool_rows()}
        assert rows["caption"]["status"] == "offline" and rows["ocr"]["status"] == "ready"
    assert sockets.attempts == [] and policy._probes == {}


def test_an_unreachable_hub_is_found_out_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    endpoint = f"http://127.0.0.1:{closed_port()}"
    go_online(monkeypatch, tmp_path, endpoint)
    sockets = Sockets(monkeypatch)
    tools = [CaptionTool(), TagsTool(), CaptionTool(model="someone/else")]
    for tool in tools:
        status = tool.weights_status()
        assert status.state == "offline"
        assert status.message and f"where {endpoint} can be reached (it cannot from here)" in status.message
        assert tool.check() == status.message
    hub_attempts = [a for a in sockets.attempts if "create_connection" in a]
    assert hub_attempts == ["create_connection(('127.0.0.1', %d),)" % int(endpoint.rsplit(":", 1)[1])]
    # the agent leaves the tools out and goes on with what is here, without asking again
    names = [t.name for t in Agent(ScriptedLLM(["Final Answer: x"])).tools]
    assert names == ["ocr"] and len([a for a in sockets.attempts if "create_connection" in a]) == 2  # + detect's URL
    # an explicit pull says why in one sentence, without the hub client's retries
    lines: list[str] = []
    assert run_pull(pull_targets(["caption"]), err=lines.append) == 1
    assert lines == [f"mmreact: caption: {endpoint} cannot be reached from here, so the BLIP captioning weights "
                     "'Salesforce/blip-image-captioning-large' cannot be downloaded."]


def test_a_hanging_name_lookup_is_abandoned(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A lookup that would hang (no answer from DNS) costs the probe's budget, not the lookup's."""
    go_online(monkeypatch, tmp_path, "https://hub.example.invalid")
    finished = threading.Event()
    release = threading.Event()

    def hanging_lookup(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        release.wait(30)
        finished.set()
        raise socket.gaierror("no answer")

    monkeypatch.setattr(socket, "getaddrinfo", hanging_lookup)
    try:
        assert policy.reachable("https://hub.example.invalid/api") is False
        assert not finished.is_set()  # answered while the lookup was still hanging
        assert CaptionTool().weights_status().state == "offline"  # remembered: no second lookup
    finally:
        release.set()


# -- with a (loopback) network ------------------------------------------------------------------
def test_first_use_downloads_inside_agent_run(hub: FakeHub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                              capfd: pytest.CaptureFixture[str],
                                              checkpoints: dict[str, Path]) -> None:
    ids = hub.ids  # type: ignore[attr-defined]
    go_online(monkeypatch, tmp_path, hub.url, MMREACT_CAPTION_MODEL=ids["caption"], MMREACT_TAGS_MODEL=ids["tags"],
              MMREACT_DENSE_MODEL=ids["dense_caption"])
    llm = ScriptedLLM(["Thought: look.\nAction: caption(image_1)\nAction: tags(image_1, top_k=3)",
                       "Final Answer: done"])
    agent = Agent(llm)
    assert [t.name for t in agent.tools] == ["caption", "dense_caption", "tags", "ocr"]  # detect: its URL is closed
    statuses = {t.name: t.weights_status() for t in agent.tools}
    assert statuses["caption"].state == "download" and "download from" in (statuses["caption"].message or "")
    assert hub.downloads() == []

    result = agent.run("What is this?", [str(ASTRONAUT)])
    calls = result.trace.steps[0].calls
    assert [c.error for c in calls] == [False, False], [c.text for c in calls]
    assert calls[0].text.splitlines()[1].startswith("Caption: ") and calls[1].text.splitlines()[1].startswith("Tags")
    err = capfd.readouterr().err
    assert f"mmreact: downloading the BLIP captioning weights '{ids['caption']}'" in err
    fetched = hub.downloads()
    assert sorted(fetched) == sorted(
        ["config.json", "generation_config.json", "model.safetensors", "processor_config.json", "tokenizer.json",
         "tokenizer_config.json", "config.json", "model.safetensors", "processor_config.json", "tokenizer.json",
         "tokenizer_config.json"])  # both checkpoints, nothing else (no README, .h5, .bin, onnx/)
    tool = agent._by_name["caption"]
    here = Path(tool.resolved_weights() or "")
    assert here.is_relative_to(tmp_path / "hf" / "hub") and sha256(here / "model.safetensors") == sha256(
        checkpoints["caption"] / "model.safetensors")
    assert tool.weights_status().state == "ready" and agent._by_name["dense_caption"].resolved_weights() is None


def test_a_dropped_connection_restarts_and_the_file_is_whole(hub: FakeHub, monkeypatch: pytest.MonkeyPatch,
                                                            tmp_path: Path, checkpoints: dict[str, Path]) -> None:
    go_online(monkeypatch, tmp_path, hub.url)
    hub.drop("model.safetensors", at=100_000)
    tool = CaptionTool(model=hub.ids["caption"])  # type: ignore[attr-defined]
    path = Path(tool.weights().fetch(progress=False))
    gets = [r for r in hub.log if r.method == "GET" and r.path.endswith("model.safetensors")]
    assert len(gets) == 2  # the connection was dropped halfway, and the client came back for the rest
    assert sha256(path / "model.safetensors") == sha256(checkpoints["caption"] / "model.safetensors")
    assert not list((tmp_path / "hf" / "hub").rglob("*.incomplete"))
    assert tool.resolved_weights() == str(path)


def test_allow_download_0_leaves_it_to_pull(hub: FakeHub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    go_online(monkeypatch, tmp_path, hub.url, MMREACT_ALLOW_DOWNLOAD="0",
              MMREACT_CAPTION_MODEL=hub.ids["caption"])  # type: ignore[attr-defined]
    tool = CaptionTool(model=hub.ids["caption"])  # type: ignore[attr-defined]
    status = tool.weights_status()
    assert status.state == "manual" and tool.check() == status.message
    assert "MMREACT_ALLOW_DOWNLOAD=0 turns first-use downloads off" in (status.message or "")
    assert "caption" not in [t.name for t in Agent(ScriptedLLM(["Final Answer: x"])).tools]
    with pytest.raises(WeightsMissingError):
        tool.ensure_weights()
    assert hub.downloads() == []
    plan = tool.weights().plan()  # sizes come from the hub's file metadata
    assert isinstance(plan, Plan) and plan.fetch_bytes == sum(
        len(hub.repos[hub.ids["caption"]].files[f.name]) for f in plan.files)  # type: ignore[attr-defined]
    out: list[str] = []
    assert run_pull(pull_targets(["caption"]), out=out.append) == 0  # an explicit pull still fetches
    assert tool.weights_status().state == "ready" and out[-1] == f"caption: ready: {tool.resolved_weights()}"


def test_hub_errors_are_one_sentence(hub: FakeHub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    go_online(monkeypatch, tmp_path, hub.url)
    tool = CaptionTool(model="mmreact-test/no-such-model")
    assert tool.weights_status().state == "download"  # unknown until asked: the hub answers on first use
    with pytest.raises(WeightsMissingError) as info:
        tool.ensure_ready()
    assert str(info.value) == (f"There is no model 'mmreact-test/no-such-model' on {hub.url} (or it is private): "
                               "check the id, or log in with `hf auth login`.")
    assert "neither a model folder" in (CaptionTool(model="a/b/c").check() or "")


def test_hf_llm_pull_and_first_use(hub: FakeHub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """``hf:ID`` LLMs: ``pull --llm`` fetches config, weights and tokenizer; the LLM then loads from the cache."""
    from mmreact.llms.hf import _locate

    go_online(monkeypatch, tmp_path, hub.url)
    llm_id = hub.ids["caption"]  # type: ignore[attr-defined]  # any checkpoint with config, weights, tokenizer
    with pytest.raises(ConfigError, match="--llm takes hf:MODEL_ID"):
        pull_targets(None, "gguf:x.gguf")
    out: list[str] = []
    assert run_pull(pull_targets(None, f"hf:{llm_id}"), dry_run=True, out=out.append) == 0
    assert out[0].startswith(f"hf:{llm_id}: language model weights '{llm_id}': 6 files, ") and hub.downloads() == []
    where, gguf = _locate(llm_id)  # first use: fetched, then a local folder
    assert gguf is None and Path(where).is_relative_to(tmp_path / "hf" / "hub")
    assert "model.safetensors" in hub.downloads()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert _locate(llm_id) == (where, None)  # offline now: found complete in the cache


# -- ultralytics and EasyOCR downloaders ---------------------------------------------------------
@pytest.fixture(scope="module")
def yolo_pt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("ultralytics")
    from mmreact.experts.detect import _prepare_env, keep_torch_threads

    _prepare_env()
    with keep_torch_threads():
        from ultralytics import YOLO

        path = tmp_path_factory.mktemp("yolo") / "yolo-tiny.pt"
        YOLO("yolo11n.yaml").save(path)
    return path


def test_yolo_weights_come_through_ultralytics_downloader(hub: FakeHub, monkeypatch: pytest.MonkeyPatch,
                                                          tmp_path: Path, yolo_pt: Path) -> None:
    go_online(monkeypatch, tmp_path, hub.url)
    monkeypatch.chdir(tmp_path)
    url = hub.add_file("mmreact-yolo.pt", yolo_pt.read_bytes())
    tool = DetectTool(model=url, device="cpu")
    assert tool.weights_status().state == "download" and tool.check() is None
    plan = tool.weights().plan()
    assert plan.files[0].size == yolo_pt.stat().st_size and plan.destination == str(tmp_path / "weights")

    hub.drop("mmreact-yolo.pt", at=yolo_pt.stat().st_size // 2)  # the server goes away halfway
    with pytest.raises(WeightsMissingError) as info:
        tool.ensure_ready()
    assert f"Downloading the YOLO weights 'mmreact-yolo.pt' from {url} failed" in str(info.value)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "weights").exists() or list((tmp_path / "weights").iterdir()) == []  # no partial file
    assert tool.resolved_weights() is None

    obs = tool(str(ASTRONAUT))  # the next first use starts again, and runs
    assert obs.text.startswith("Image size: 512x512") and not obs.error
    target = tmp_path / "weights" / "mmreact-yolo.pt"
    assert tool.resolved_weights() == str(target) and sha256(target) == sha256(yolo_pt)
    assert DetectTool(model=url).weights().plan().to_fetch == ()  # a second pull fetches nothing

    target.write_bytes(yolo_pt.read_bytes()[:1000])  # a truncated copy is not taken for weights
    assert DetectTool(model=url).resolved_weights() is None and "incomplete" in (DetectTool(model=url).check() or "")
    assert "publishes no file" in (DetectTool(model="my-own-model.pt").check() or "")


def test_easyocr_languages_come_through_easyocr_downloader(hub: FakeHub, monkeypatch: pytest.MonkeyPatch,
                                                           tmp_path: Path) -> None:
    """French needs latin_g2.pth beside the detector: both are fetched from the URLs EasyOCR's own table
    names (here rewritten to loopback), with EasyOCR's download_and_unzip."""
    pytest.importorskip("easyocr")
    import easyocr_en_models

    from mmreact.experts import ocr

    go_online(monkeypatch, tmp_path, hub.url)
    shipped = Path(easyocr_en_models.model_dir())
    zips = {}
    for name, src in (("craft_mlt_25k", "craft_mlt_25k.pth"), ("latin", "english_g2.pth")):
        inner = "craft_mlt_25k.pth" if name == "craft_mlt_25k" else "latin_g2.pth"
        path = tmp_path / f"{name}.zip"
        with zipfile.ZipFile(path, "w") as z:
            z.write(shipped / src, inner)  # stand-in bytes: only the download path is under test here
        zips[inner] = hub.add_file(f"{name}.zip", path.read_bytes())
    table = json.loads(json.dumps(ocr._easyocr_config()))
    table["detection_models"]["craft"]["url"] = zips["craft_mlt_25k.pth"]
    table["recognition_models"]["gen2"]["latin_g2"]["url"] = zips["latin_g2.pth"]
    monkeypatch.setattr(ocr, "_easyocr_config", lambda: table)

    tool = OCRTool(languages=["fr"])
    status = tool.weights_status()
    assert status.state == "download" and "latin_g2.pth" in (status.message or "")
    source = tool.weights()
    plan = source.plan()
    assert [f.name for f in plan.to_fetch] == ["craft_mlt_25k.pth", "latin_g2.pth"]
    assert plan.destination == str(tmp_path / "weights")
    hub.drop("latin.zip", at=1000)
    with pytest.raises(WeightsMissingError, match="Downloading latin_g2.pth from .* failed"):
        source.fetch(plan, progress=False)
    assert tool.resolved_weights() is None and not (tmp_path / "weights" / "latin_g2.pth").exists()
    assert source.fetch(progress=False) == str(tmp_path / "weights")
    assert tool.resolved_weights() == str(tmp_path / "weights")
    assert sha256(tmp_path / "weights" / "latin_g2.pth") == sha256(shipped / "english_g2.pth")
    assert source.plan().to_fetch == ()


# -- a cache that went wrong, a hub that is slow, doctor -----------------------------------------
def test_a_truncated_file_in_the_cache_is_downloaded_again(hub: FakeHub, monkeypatch: pytest.MonkeyPatch,
                                                           tmp_path: Path, checkpoints: dict[str, Path],
                                                           capfd: pytest.CaptureFixture[str]) -> None:
    """A blob cut short in the hub cache (a full disk, a copy that stopped) is found, removed and
    fetched again, by `pull` and by a first use; one that cannot be removed is named with what to do."""
    model_id = hub.ids["caption"]  # type: ignore[attr-defined]
    go_online(monkeypatch, tmp_path, hub.url, MMREACT_CAPTION_MODEL=model_id)
    whole = sha256(checkpoints["caption"] / "model.safetensors")
    assert run_pull(pull_targets(["caption"]), out=[].append) == 0
    folder = Path(CaptionTool(model=model_id).resolved_weights() or "")
    blob = (folder / "model.safetensors").resolve()
    data = blob.read_bytes()

    def truncate() -> None:
        blob.write_bytes(data[: len(data) // 2])
        assert CaptionTool(model=model_id).resolved_weights() is None

    truncate()
    assert "(model.safetensors is incomplete)" in (CaptionTool(model=model_id).weights_status().message or "")
    out: list[str] = []
    errors: list[str] = []
    assert run_pull(pull_targets(["caption"]), out=out.append, err=errors.append) == 0, errors
    assert out[0].endswith(f"1 of 6 files, {human_size(len(data))} to download ({hub.url}/{model_id})")
    assert sha256(folder / "model.safetensors") == whole and hub.downloads().count("model.safetensors") == 2
    assert (f"mmreact: {blob} holds {len(data) // 2:,} of the {len(data):,} bytes the hub lists (truncated): "
            "downloading it again") in capfd.readouterr().err

    truncate()  # first use, and the snapshot's link gone too: the blob alone is broken
    (folder / "model.safetensors").unlink()
    assert CaptionTool(model=model_id).ensure_weights() == str(folder)
    assert sha256(folder / "model.safetensors") == whole and hub.downloads().count("model.safetensors") == 3

    truncate()  # a copy that cannot be removed is named, with what to delete
    real_unlink = os.unlink

    def refuse(path, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        if Path(path) == blob:
            raise PermissionError(13, "Permission denied")
        return real_unlink(path, *args, **kwargs)

    with monkeypatch.context() as mp:
        mp.setattr(os, "unlink", refuse)
        with pytest.raises(WeightsMissingError) as info:
            CaptionTool(model=model_id).ensure_weights()
    assert str(info.value) == (f"{blob} holds {len(data) // 2:,} of the {len(data):,} bytes the hub lists "
                               "(truncated) and cannot be removed (Permission denied): delete it, then run "
                               "`mmreact pull caption` again.")
    assert "checkpoint" not in str(info.value)


def test_a_slow_download_that_keeps_moving_is_not_cut(hub: FakeHub, monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path) -> None:
    """The stall bound watches what reaches the disk: the hub client must write in pieces small enough
    that a slow link shows progress (its default 10 MB piece would look like a stall here)."""
    from mmreact.weights.hub import HubWeights

    go_online(monkeypatch, tmp_path, hub.url, MMREACT_STALL_TIMEOUT="3")
    weights = _safetensors(tmp_path / "slow.safetensors", 1_200_000)
    hub.add_repo("mmreact-test/slow", extra={"config.json": b"{}", "model.safetensors": weights.read_bytes()})
    hub.throttle("model.safetensors", rate=200_000)  # 6 s in all, a 256 KiB piece every 1.3 s
    path = Path(HubWeights("mmreact-test/slow", what="slow").fetch(progress=False))
    assert sha256(path / "model.safetensors") == sha256(weights)


def test_doctor_and_tools_agree(hub: FakeHub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Weights that would download on first use are "not downloaded" in both, not "ready" in doctor."""
    from mmreact.doctor import _tools
    from mmreact.tools.status import status_word, tool_rows

    go_online(monkeypatch, tmp_path, hub.url, MMREACT_CAPTION_MODEL=hub.ids["caption"])  # type: ignore[attr-defined]

    def both() -> tuple[dict, dict]:
        return {r["name"]: r for r in tool_rows(sizes=False)}, {r["tool"]: r for r in _tools()}

    rows, doctor = both()
    assert rows["caption"]["status"] == "download" and doctor["caption"]["ready"] is False  # was "ready"
    assert doctor["caption"]["status"] == "not downloaded" and doctor["ocr"]["ready"] is True
    for name, row in rows.items():
        assert (doctor[name]["ready"], doctor[name]["status"]) == (row["status"] == "ready", status_word(row)), name
    assert run_pull(pull_targets(["caption"]), out=[].append) == 0
    rows, doctor = both()
    assert rows["caption"]["status"] == "ready" and doctor["caption"]["ready"] is True
