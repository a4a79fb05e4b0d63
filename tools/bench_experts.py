"""Vision experts: naive path vs mmreact's path, side by side in one run.

    python tools/bench_experts.py [--size real|tiny] [--device cpu|cuda] [--repeats 3] [--models DIR]

Models are the REAL architectures with random weights (no weights can be downloaded here), built
once into ``--models`` (default ``~/.cache/mmreact-bench``) by ``tests/tiny_models.py``: BLIP-base,
Florence-2-base, CLIP ViT-B/32 (``--size real``), or tiny versions of them for a smoke run; YOLO11n
from ``yolo11n.yaml``; EasyOCR with its real English weights. The image is a 640x480 photo.

naive   = each library called directly the obvious way: eager fp32, one expert after another,
          CLIP's text tower run over the whole tag vocabulary on every call.
mmreact = the five mmreact tools, called through the agent engine in ONE step (so they run
          concurrently), half precision on GPU, CLIP text embeddings computed once per process,
          result cache cleared before each repetition (so this measures compute, not the cache).
warm    = the same step again on the same image (a second question): answered by the result cache.

Prints per-expert medians, the all-five total, and naive / mmreact ratios; on GPU also the memory
held with all five loaded.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

EXPERTS = ("caption", "dense_caption", "tags", "detect", "ocr")
# Same decoding settings on both paths (greedy, same limits), so both decode the same tokens.
CAPTION_TOKENS = 20
DENSE_TOKENS = 128


def build_models(root: Path, size: str) -> dict[str, Path]:
    import tiny_models as tm

    root.mkdir(parents=True, exist_ok=True)
    specs = {
        "caption": (tm.build_blip, tm.BLIP_BASE if size == "real" else {}),
        "dense_caption": (tm.build_florence2, tm.FLORENCE2_BASE if size == "real" else {}),
        "tags": (tm.build_clip, tm.CLIP_B32 if size == "real" else {}),
    }
    out = {}
    for name, (build, kwargs) in specs.items():
        path = root / f"{size}-{name}"
        if not (path / "config.json").is_file():
            print(f"building random {size} {name} model in {path} ...", flush=True)
            build(path, **kwargs)
        out[name] = path
    return out


def photo():
    from PIL import Image as PILImage
    from skimage import data

    return PILImage.fromarray(data.astronaut()).resize((640, 480))


def vocabulary() -> list[str]:
    from mmreact.experts.tags import default_vocabulary

    return list(default_vocabulary()[:1000])


def timed(fn, repeats: int) -> float:
    fn()  # warm-up: loads, kernels, allocator
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def naive_runners(models: dict[str, Path], device: str, image, tags: list[str]):
    import easyocr
    import easyocr_en_models
    import numpy as np
    import torch
    from transformers import (AutoProcessor, BlipForConditionalGeneration, BlipProcessor, CLIPModel, CLIPProcessor,
                              Florence2ForConditionalGeneration)
    from ultralytics import YOLO

    blip = BlipForConditionalGeneration.from_pretrained(models["caption"]).to(device).eval()
    blip_p = BlipProcessor.from_pretrained(models["caption"])
    flo = Florence2ForConditionalGeneration.from_pretrained(models["dense_caption"]).to(device).eval()
    flo_p = AutoProcessor.from_pretrained(models["dense_caption"])
    clip = CLIPModel.from_pretrained(models["tags"]).to(device).eval()
    clip_p = CLIPProcessor.from_pretrained(models["tags"])
    yolo = YOLO("yolo11n.yaml", verbose=False)
    reader = easyocr.Reader(["en"], gpu=device.startswith("cuda"), verbose=False,
                            model_storage_directory=easyocr_en_models.model_dir(), download_enabled=False)
    arr = np.asarray(image)
    prompts = [f"a photo of {t}." for t in tags]

    @torch.inference_mode()
    def caption():
        x = blip_p(images=image, return_tensors="pt").to(device)
        blip.generate(**x, max_new_tokens=CAPTION_TOKENS, num_beams=1, do_sample=False)

    @torch.inference_mode()
    def dense():
        x = flo_p(text="<DENSE_REGION_CAPTION>", images=image, return_tensors="pt").to(device)
        flo.generate(**x, max_new_tokens=DENSE_TOKENS, num_beams=1, do_sample=False)

    @torch.inference_mode()
    def tag():
        x = clip_p(text=prompts, images=image, return_tensors="pt", padding=True).to(device)
        clip(**x).logits_per_image.softmax(-1)

    def detect():
        yolo.predict(image, verbose=False, device=device)

    def ocr():
        reader.readtext(arr)

    return {"caption": caption, "dense_caption": dense, "tags": tag, "detect": detect, "ocr": ocr}


def mmreact_tools(models: dict[str, Path], device: str, tags: list[str]):
    from mmreact.experts.caption import CaptionTool
    from mmreact.experts.dense import DenseCaptionTool
    from mmreact.experts.detect import DetectTool
    from mmreact.experts.ocr import OCRTool
    from mmreact.experts.tags import TagsTool

    return [
        CaptionTool(str(models["caption"]), device=device, max_new_tokens=CAPTION_TOKENS),
        DenseCaptionTool(str(models["dense_caption"]), device=device, max_new_tokens=DENSE_TOKENS),
        TagsTool(str(models["tags"]), device=device, vocabulary=tags),
        DetectTool("yolo11n.yaml", device=device),
        OCRTool(device=device),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=["real", "tiny"], default="real")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", type=Path, default=Path.home() / ".cache" / "mmreact-bench")
    args = parser.parse_args()

    import torch

    from mmreact import Agent, ScriptedLLM
    from mmreact.cache import result_cache
    from mmreact.experts.base import select_device

    device = select_device(args.device)
    models = build_models(args.models, args.size)
    image = photo()
    tags = vocabulary()
    print(f"device: {device} ({torch.cuda.get_device_name() if device.startswith('cuda') else 'CPU'}), "
          f"{args.size}-size random models, 640x480 image, {len(tags)} tags, median of {args.repeats}", flush=True)

    naive = naive_runners(models, device, image, tags)
    naive_t = {name: timed(fn, args.repeats) for name, fn in naive.items()}
    naive_total = sum(naive_t.values())
    del naive
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()

    tools = mmreact_tools(models, device, tags)
    cache = result_cache()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "photo.png"
        image.save(path)
        from mmreact.images import load_image

        img = load_image(path)
        mm_t = {}
        for t in tools:
            def one(t=t):
                cache.clear()
                t(img)
            mm_t[t.name] = timed(one, args.repeats)
        step = "\n".join(f"Action: {n}(image_1)" for n in EXPERTS)
        agent = Agent(ScriptedLLM([step, "Final Answer: done"], repeat_last=False), tools=tools)

        def all_five(clear: bool = True) -> float:
            if clear:
                cache.clear()
            agent.llm.reset()  # type: ignore[attr-defined]
            result = agent.run("Describe the image.", [img])
            assert result.answer == "done" and not any(c.error for c in result.trace.steps[0].calls), \
                result.trace.pretty()
            return result.trace.steps[0].tool_seconds

        all_five()
        totals = [all_five() for _ in range(args.repeats)]
        mm_total = statistics.median(totals)
        warm = statistics.median([all_five(clear=False) for _ in range(args.repeats)])
    memory = (f"{torch.cuda.max_memory_allocated() / 2**30:.2f} GiB peak allocated with all five loaded"
              if device.startswith("cuda") else "n/a on CPU")

    print(f"\n{'expert':<16}{'naive ms':>12}{'mmreact ms':>12}{'naive/mmreact':>16}")
    for name in EXPERTS:
        a, b = naive_t[name] * 1e3, mm_t[name] * 1e3
        print(f"{name:<16}{a:>12.1f}{b:>12.1f}{a / b:>15.2f}x")
    print(f"{'all five':<16}{naive_total * 1e3:>12.1f}{mm_total * 1e3:>12.1f}{naive_total / mm_total:>15.2f}x"
          "   (naive: sequential sum; mmreact: one agent step, concurrent)")
    print(f"{'all five, warm':<16}{'':>12}{warm * 1e3:>12.2f}{naive_total / warm:>15.0f}x   (same image again: result cache)")
    print(f"GPU memory: {memory}")


if __name__ == "__main__":
    main()
