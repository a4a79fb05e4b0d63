"""The transformers experts (caption: BLIP, dense_caption: Florence-2, tags: CLIP) on tiny random
models of the real architectures, built offline and loaded through the users' path (``model=<dir>``).

Output checks are structural (a random model says random things) plus cross-checks against the
same model run directly through transformers; the Florence-2 box path is checked exactly with a
tiny model wired to write a known region text (``tiny_models.build_florence2(script=...)``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import mmreact
from mmreact import Agent, ScriptedLLM, WeightsMissingError
from mmreact.cache import result_cache
from mmreact.experts.base import size_line
from mmreact.experts.caption import CaptionTool, clean_caption
from mmreact.experts.dense import DenseCaptionTool, parse_regions
from mmreact.experts.dense import cut_note as dense_cut_note
from mmreact.experts.tags import TagsTool, default_vocabulary
from mmreact.tools.registry import BUILTIN_TOOLS

sys.path.insert(0, str(Path(__file__).parent))
import tiny_models  # noqa: E402

COCO = (
    "person, bicycle, car, motorcycle, airplane, bus, train, truck, boat, traffic light, fire hydrant, stop sign, "
    "parking meter, bench, bird, cat, dog, horse, sheep, cow, elephant, bear, zebra, giraffe, backpack, umbrella, "
    "handbag, tie, suitcase, frisbee, skis, snowboard, sports ball, kite, baseball bat, baseball glove, skateboard, "
    "surfboard, tennis racket, bottle, wine glass, cup, fork, knife, spoon, bowl, banana, apple, sandwich, orange, "
    "broccoli, carrot, hot dog, pizza, donut, cake, chair, couch, potted plant, bed, dining table, toilet, tv, laptop, "
    "mouse, remote, keyboard, cell phone, microwave, oven, toaster, sink, refrigerator, book, clock, vase, scissors, "
    "teddy bear, hair drier, toothbrush"
).split(", ")
SCRIPT = "a cat<loc_100><loc_200><loc_700><loc_900>the ear<loc_0><loc_0><loc_999><loc_999>"
TOOLS = {"caption": CaptionTool, "dense_caption": DenseCaptionTool, "tags": TagsTool}


def skimage_file(name: str) -> Path:
    import skimage

    return Path(skimage.data_dir) / name


CHELSEA = skimage_file("chelsea.png")  # a cat, 451 x 300
ASTRONAUT = skimage_file("astronaut.png")  # 512 x 512


def crops(n: int) -> list:
    """``n`` different real images: crops of scikit-image's astronaut photo."""
    from PIL import Image as PILImage

    base = PILImage.open(ASTRONAUT).convert("RGB")
    return [base.crop((10 * i, 7 * i, 200 + 13 * i, 180 + 11 * i)) for i in range(n)]


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("MMREACT_ALLOW_DOWNLOAD", raising=False)
    for var in ("MMREACT_CAPTION_MODEL", "MMREACT_DENSE_MODEL", "MMREACT_TAGS_MODEL", "MMREACT_DEVICE"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny")
    return {
        "caption": tiny_models.build_blip(root / "blip"),
        "tags": tiny_models.build_clip(root / "clip"),
        "dense_caption": tiny_models.build_florence2(root / "florence"),
        "scripted": tiny_models.build_florence2(root / "florence-script", d_model=64, script=SCRIPT),
    }


def make(name: str, path: Path, **kw):
    if name in ("caption", "dense_caption"):  # short generations keep the tests fast
        kw.setdefault("max_new_tokens", 12 if name == "caption" else 24)
    return TOOLS[name](model=str(path), **kw)


def fresh_copy(path: Path, tmp_path: Path) -> Path:
    """The same model under a new path: a new model id, so it loads afresh in this process."""
    return Path(shutil.copytree(path, tmp_path / path.name))


# -- no model needed ---------------------------------------------------------------------
def test_vocabulary_file_is_clean_and_covers_coco():
    text = (Path(mmreact.__file__).parent / "data" / "tags.txt").read_text(encoding="utf-8")
    tags = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    assert len(tags) == len(set(tags)), "duplicate tags in the file"
    assert all(t == t.strip().lower() and "  " not in t and "," not in t for t in tags)
    assert len(tags) >= 600
    assert list(default_vocabulary()) == tags
    assert len(COCO) == 80 and not set(COCO) - set(tags)


def _open_images_name(name: str) -> str:
    """An Open Images class name as tags.txt writes it (the rule in the file's header)."""
    name = re.sub(r"\s*\(.*?\)", "", name.lower()).replace("&", "and")
    return " ".join(re.sub(r"^(human|common) ", "", name).split())


def test_vocabulary_covers_every_open_images_class():
    import ultralytics
    import yaml

    spec = Path(ultralytics.__file__).parent / "cfg" / "datasets" / "open-images-v7.yaml"
    names = list(yaml.safe_load(spec.read_text(encoding="utf-8"))["names"].values())
    assert len(names) >= 600
    tags = set(default_vocabulary())
    missing = [n for n in names if n.lower() not in tags and _open_images_name(n) not in tags]
    assert not missing, missing


def test_registry_names_these_classes_with_llm_ready_descriptions():
    for name, cls in TOOLS.items():
        assert BUILTIN_TOOLS[name] == f"{cls.__module__}:{cls.__name__}"
        tool = cls(model="/nonexistent/dir")
        assert tool.name == name
        assert tool.description.endswith(".") and tool.description.count(".") == 1
        assert tool.image_params == ("image",)
    assert TagsTool(model="x/y").usage() == "tags(image: image, top_k: int = 10)"
    assert CaptionTool(model="x/y").usage() == "caption(image: image)"


def test_import_and_check_load_nothing_heavy():
    code = (
        "import sys, mmreact\n"
        "from mmreact.experts.caption import CaptionTool\n"
        "from mmreact.experts.dense import DenseCaptionTool\n"
        "from mmreact.experts.tags import TagsTool\n"
        "for cls in (CaptionTool, DenseCaptionTool, TagsTool):\n"
        "    assert cls(model='mmreact-test/absent').check() is not None\n"
        "heavy = sorted(m for m in ('torch', 'transformers') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60,
                          cwd=Path(mmreact.__file__).parent.parent)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("name", sorted(TOOLS))
def test_missing_weights_are_one_sentence(name, monkeypatch):
    missing = "mmreact-test/no-such-model"
    tool = TOOLS[name](model=missing)
    message = tool.check()
    assert message is not None and missing in message and "\n" not in message
    assert tool.env_var in message and f"mmreact pull {name}" in message
    with pytest.raises(WeightsMissingError) as info:
        tool(CHELSEA)
    assert str(info.value) == message
    monkeypatch.setenv(tool.env_var, missing)  # the env var names the checkpoint when model= is absent
    assert TOOLS[name]().model_id == missing
    # Through the agent the same sentence reaches the model as an observation, not a traceback.
    llm = ScriptedLLM([f"Thought: look.\nAction: {name}(image_1)", "Final Answer: cannot see"])
    result = Agent(llm, tools=[tool]).run("What is this?", CHELSEA)
    call = result.trace.steps[0].calls[0]
    assert call.error and message in call.text


def test_caption_cleanup_and_region_parsing_rules():
    assert clean_caption("arafed woman  sitting on a bench ") == "woman sitting on a bench"
    assert clean_caption("araffe cat") == "cat"
    text = ("</s><s>a dog<loc_0><loc_0><loc_499><loc_999>"
            "wheels<loc_10><loc_10><loc_20><loc_20><loc_30><loc_30><loc_40><loc_40></s>")
    assert parse_regions(text, 200, 100) == [
        ("a dog", [0.0, 0.0, 99.0, 99.0]),
        ("wheels", [2.0, 1.0, 4.0, 2.0]),
        ("wheels", [6.0, 3.0, 8.0, 4.0]),
    ]


# -- tiny real models ------------------------------------------------------------------
def check_observation(obs, width: int, height: int) -> list[str]:
    lines = obs.text.splitlines()
    assert lines[0] == size_line(width, height)
    assert not obs.error
    assert json.loads(json.dumps(obs.artifact)) == obs.artifact
    return lines


@pytest.mark.slow
def test_caption_matches_the_model_run_directly(models):
    import torch
    from transformers import BlipForConditionalGeneration, BlipProcessor

    tool = make("caption", models["caption"])
    obs = tool(str(CHELSEA))
    lines = check_observation(obs, 451, 300)
    caption = obs.artifact["caption"]
    assert caption and lines[1] == f"Caption: {caption}" and len(lines) == 2

    from PIL import Image as PILImage

    model = BlipForConditionalGeneration.from_pretrained(models["caption"]).eval()
    processor = BlipProcessor.from_pretrained(models["caption"])
    with torch.inference_mode():
        ids = model.generate(**processor(images=PILImage.open(CHELSEA).convert("RGB"), return_tensors="pt"),
                             max_new_tokens=12, do_sample=False)
    assert caption == clean_caption(processor.decode(ids[0], skip_special_tokens=True))


@pytest.mark.slow
def test_dense_caption_boxes_are_pixels_of_the_original_image(models):
    tool = make("dense_caption", models["scripted"], max_new_tokens=40)
    for path, (w, h) in ((CHELSEA, (451, 300)), (ASTRONAUT, (512, 512))):
        obs = tool(str(path))
        lines = check_observation(obs, w, h)

        def px(b: int, side: int) -> float:
            return float(int((b + 0.5) * side / 1000))

        cat = [px(100, w), px(200, h), px(700, w), px(900, h)]
        ear = [px(0, w), px(0, h), px(999, w), px(999, h)]
        assert obs.artifact == {"regions": [{"caption": "a cat", "box": cat}, {"caption": "the ear", "box": ear}]}
        assert lines[1] == "Regions (caption: [x1, y1, x2, y2]):"
        assert lines[2] == "a cat: [" + ", ".join(str(int(v)) for v in cat) + "]"
        assert all(0 <= r["box"][0] <= r["box"][2] <= w and 0 <= r["box"][1] <= r["box"][3] <= h
                   for r in obs.artifact["regions"])
    short = make("dense_caption", models["scripted"], max_new_tokens=40, max_regions=1)(str(CHELSEA))
    assert short.text.splitlines()[-1] == "... and 1 more regions left out."
    assert len(short.artifact["regions"]) == 2


@pytest.mark.slow
def test_dense_caption_says_when_the_budget_cut_the_list(models):
    """The scripted model writes 22 new tokens; with a budget of 15 it stops inside "the ear"."""
    result_cache().clear()
    whole = make("dense_caption", models["scripted"], max_new_tokens=40)(str(CHELSEA))
    assert "cut" not in whole.artifact and "cut" not in whole.text
    cut = make("dense_caption", models["scripted"], max_new_tokens=15)(str(CHELSEA))
    assert [r["caption"] for r in cut.artifact["regions"]] == ["a cat"] and cut.artifact["cut"] is True
    lines = cut.text.splitlines()
    assert lines[2].startswith("a cat: [") and lines[-1] == dense_cut_note(15)
    assert "budget of 15 new tokens" in lines[-1] and "missing" in lines[-1]
    none = make("dense_caption", models["scripted"], max_new_tokens=3)(str(CHELSEA))  # cut inside the first
    assert none.artifact == {"regions": [], "cut": True}
    assert none.text.splitlines()[1:] == ["Regions: none found.", dense_cut_note(3)]
    batch = make("dense_caption", models["scripted"], max_new_tokens=15).run_batch([str(ASTRONAUT), str(CHELSEA)])
    assert all(obs.artifact.get("cut") for obs in batch)


@pytest.mark.slow
def test_dense_caption_budget_defaults_to_the_model_card_and_respects_the_decoder_limit(models):
    tool = DenseCaptionTool(model=str(models["scripted"]))
    assert (tool.max_new_tokens, tool.num_beams) == (1024, 1)  # Florence-2's card: 1,024 new tokens
    limit = tool.bundle.model.config.text_config.max_position_embeddings
    assert limit < 1024 and tool.budget(tool.bundle.model) == limit
    assert make("dense_caption", models["scripted"], max_new_tokens=7).budget(tool.bundle.model) == 7


@pytest.mark.slow
def test_dense_caption_static_kv_cache_gives_the_same_regions(models):
    """The GPU default (static KV cache) decodes exactly what the dynamic cache does."""
    result_cache().clear()
    eager = make("dense_caption", models["scripted"], max_new_tokens=40, static_cache=False)(str(CHELSEA))
    result_cache().clear()
    static = make("dense_caption", models["scripted"], max_new_tokens=40, static_cache=True)
    assert static._cache_options("cpu") == {"cache_implementation": "static"}
    assert static(str(CHELSEA)).artifact == eager.artifact
    assert make("dense_caption", models["scripted"])._cache_options("cuda:0") == {"cache_implementation": "static"}
    assert make("dense_caption", models["scripted"])._cache_options("cpu") == {}


@pytest.mark.slow
def test_dense_caption_random_model_and_parser_parity(models):
    from transformers import AutoProcessor

    obs = make("dense_caption", models["dense_caption"])(CHELSEA)
    lines = check_observation(obs, 451, 300)
    assert lines[1] in ("Regions: none found.", "Regions (caption: [x1, y1, x2, y2]):")
    for region in obs.artifact["regions"]:
        x1, y1, x2, y2 = region["box"]
        assert region["caption"] and 0 <= x1 <= x2 <= 451 and 0 <= y1 <= y2 <= 300
    # The fallback parser agrees with the processor's post_process_generation.
    processor = AutoProcessor.from_pretrained(models["dense_caption"])
    texts = {"</s><s>" + SCRIPT + "</s>": (451, 300), "<s>a red car<loc_5><loc_6><loc_995><loc_700></s>": (640, 480)}
    for text, size in texts.items():
        ref = processor.post_process_generation(text, task="<DENSE_REGION_CAPTION>", image_size=size)
        ref = ref["<DENSE_REGION_CAPTION>"]
        expected = [(label, [float(v) for v in box]) for label, box in zip(ref["labels"], ref["bboxes"])]
        assert parse_regions(text, *size) == expected


@pytest.mark.slow
def test_tags_scores_match_clip_run_directly(models):
    import torch
    from PIL import Image as PILImage
    from transformers import CLIPModel, CLIPProcessor

    vocab = ["cat", "dog", "couch", "car", "tree", "sky", "person", "pizza", "street", "boat", "snow", "book"]
    tool = make("tags", models["tags"], vocabulary=vocab, min_score=0.0)
    obs = tool(CHELSEA, top_k=5)
    lines = check_observation(obs, 451, 300)
    tags = obs.artifact["tags"]
    assert len(tags) == 5 and {t["tag"] for t in tags} <= set(vocab)
    scores = [t["score"] for t in tags]
    assert all(0.0 <= s <= 1.0 for s in scores) and scores == sorted(scores, reverse=True)
    assert lines[1] == "Tags (score): " + ", ".join(f"{t['tag']} ({t['score']:.2f})" for t in tags)

    model = CLIPModel.from_pretrained(models["tags"]).eval()
    processor = CLIPProcessor.from_pretrained(models["tags"])
    inputs = processor(text=[f"a photo of {t}." for t in vocab], images=PILImage.open(CHELSEA).convert("RGB"),
                       return_tensors="pt", padding=True)
    with torch.inference_mode():
        probs = model(**inputs).logits_per_image.softmax(-1)[0]
    ref = sorted(zip(probs.tolist(), vocab), reverse=True)[:5]
    assert [t["tag"] for t in tags] == [tag for _, tag in ref]
    assert scores == pytest.approx([p for p, _ in ref], abs=1e-4)


@pytest.mark.slow
def test_tags_default_vocabulary_min_score_and_top_k(models):
    tool = make("tags", models["tags"], min_score=0.5)  # a random model never reaches 0.5 over ~1,600 tags
    obs = tool(CHELSEA)
    check_observation(obs, 451, 300)
    assert len(obs.artifact["tags"]) == 3  # the top 3 are always kept
    assert {t["tag"] for t in obs.artifact["tags"]} <= set(default_vocabulary())
    loose = make("tags", models["tags"], min_score=0.0)
    assert len(loose(CHELSEA, top_k=7).artifact["tags"]) == 7
    assert len(loose(CHELSEA, top_k=500).artifact["tags"]) == 50  # clamped, not an error


@pytest.mark.slow
def test_tag_text_embeddings_are_computed_once(models, monkeypatch):
    from transformers import CLIPModel

    calls = {"text": 0, "image": 0}
    real_text, real_image = CLIPModel.get_text_features, CLIPModel.get_image_features

    def text_spy(self, *a, **kw):
        calls["text"] += 1
        return real_text(self, *a, **kw)

    def image_spy(self, *a, **kw):
        calls["image"] += 1
        return real_image(self, *a, **kw)

    monkeypatch.setattr(CLIPModel, "get_text_features", text_spy)
    monkeypatch.setattr(CLIPModel, "get_image_features", image_spy)
    vocab = ["once-only tag", "another tag", "third tag", "fourth tag"]  # a vocabulary no other test embeds
    first, second = crops(2)
    tool = make("tags", models["tags"], vocabulary=vocab)
    tool(first)
    tool(second)
    assert calls == {"text": 1, "image": 2}
    other = make("tags", models["tags"], vocabulary=vocab)  # same model + vocabulary: shared embeddings
    other(first)  # same image, same arguments: answered by the result cache
    assert calls == {"text": 1, "image": 2}
    other(first, top_k=2)
    assert calls == {"text": 1, "image": 3}
    make("tags", models["tags"], vocabulary=[*vocab, "fifth tag"])(first)
    assert calls == {"text": 2, "image": 4}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TOOLS))
def test_result_cache_and_run_batch(name, models, monkeypatch):
    result_cache().clear()
    tool = make(name, models[name])
    images = crops(4)
    tool.ensure_ready()
    model = tool._loaded.model
    method = "get_image_features" if name == "tags" else "generate"  # the per-image forward
    batches: list[int] = []
    real = getattr(model, method)

    def spy(*a, **kw):
        batches.append(int(kw["pixel_values"].shape[0]))
        return real(*a, **kw)

    monkeypatch.setattr(model, method, spy)
    single = tool(images[0])
    assert tool(images[0]) == single and batches == [1]  # the second call is a cache hit
    batch = tool.run_batch([images[0], images[1], images[2]])
    assert batches == [1, 2] and batch[0] == single  # only the two new images run, in one batch
    assert tool(images[2]) == batch[2] and batches == [1, 2]  # batch results answer single calls
    result_cache().clear()
    again = tool.run_batch([images[3], images[1]])
    assert batches == [1, 2, 2] and len(again) == 2
    for obs, img in zip(again, (images[3], images[1])):
        check_observation(obs, img.width, img.height)
    if name == "tags":  # batching the image tower does not change the scores
        assert [t["tag"] for t in again[1].artifact["tags"]] == [t["tag"] for t in batch[1].artifact["tags"]]
    else:
        assert again[1] == batch[1]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TOOLS))
def test_agent_calls_the_expert(name, models):
    tool = make(name, models[name])
    direct = tool(CHELSEA)
    llm = ScriptedLLM([f"Thought: I should look at the image.\nAction: {name}(image_1)", "Final Answer: done"])
    result = Agent(llm, tools=[tool]).run("What is in this image?", str(CHELSEA))
    assert result.ok and result.answer == "done"
    call = result.trace.steps[0].calls[0]
    assert not call.error and call.text == direct.text and call.artifact == direct.artifact
    assert call.text.splitlines()[0] == size_line(451, 300)
    assert direct.text in llm.requests[1].messages[-1].content  # the model read the observation
    assert type(result.trace).from_json(result.trace.to_json()) == result.trace


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TOOLS))
def test_threads_share_one_load(name, models, tmp_path, monkeypatch):
    import transformers

    cls_name = {"caption": "BlipForConditionalGeneration", "dense_caption": "Florence2ForConditionalGeneration",
                "tags": "CLIPModel"}[name]
    model_cls = getattr(transformers, cls_name)
    real = model_cls.from_pretrained.__func__
    loads = []

    def counting(cls, *a, **kw):
        loads.append(a[0] if a else kw.get("pretrained_model_name_or_path"))
        return real(cls, *a, **kw)

    monkeypatch.setattr(model_cls, "from_pretrained", classmethod(counting))
    path = fresh_copy(models[name], tmp_path)
    tools = [make(name, path), make(name, path)]  # two instances of one checkpoint share the model
    images = crops(8)
    results: list = [None] * 8
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def work(i: int) -> None:
        try:
            start.wait()
            results[i] = tools[i % 2](images[i])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert loads == [str(path)]
    for img, obs in zip(images, results):
        assert obs is not None and obs.text.splitlines()[0] == size_line(img.width, img.height)


@pytest.mark.slow
def test_parallel_first_use_of_different_experts_loads_each_intact(models, tmp_path):
    """One agent step calling all three experts runs them in parallel threads, so their first loads
    overlap; transformers' loading is not thread-safe across models (untied or meta weights), which
    ``shared`` guards against. Fresh copies must answer exactly as the already-loaded originals."""
    names = sorted(TOOLS)
    fresh = [make(name, fresh_copy(models[name], tmp_path)) for name in names]
    reference = [make(name, models[name])(CHELSEA) for name in names]
    actions = "\n".join(f"Action: {name}(image_1)" for name in names)
    llm = ScriptedLLM([f"Thought: use every expert.\n{actions}", "Final Answer: done"])
    result = Agent(llm, tools=fresh).run("Describe the image.", CHELSEA)
    calls = result.trace.steps[0].calls
    assert [c.tool for c in calls] == names
    for call, ref in zip(calls, reference):
        assert not call.error, call.text
        assert (call.text, call.artifact) == (ref.text, ref.artifact)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TOOLS))
def test_half_precision_path(name, models, monkeypatch):
    """On a GPU the experts load in bf16/fp16; the same casts are exercised here with bf16 on the CPU."""
    import torch

    from mmreact.experts import _hf as hf_base

    monkeypatch.setattr(hf_base, "select_dtype", lambda device: torch.bfloat16)
    result_cache().clear()  # earlier fp32 results for the same image would answer otherwise
    tool = make(name, models["scripted" if name == "dense_caption" else name], **(
        {"max_new_tokens": 40} if name == "dense_caption" else {}))
    obs = tool(CHELSEA)
    check_observation(obs, 451, 300)
    assert tool._loaded.dtype == torch.bfloat16 and next(tool._loaded.model.parameters()).dtype == torch.bfloat16
    if name == "dense_caption":
        assert [r["caption"] for r in obs.artifact["regions"]] == ["a cat", "the ear"]
    if name == "tags":
        assert all(0.0 <= t["score"] <= 1.0 for t in obs.artifact["tags"])
