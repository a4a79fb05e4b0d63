"""``mmreact datagen`` throughput: the local engine vs Ray Data with 1 and 2 workers, in one run.

    python tools/bench_datagen.py [--images 8] [--llm default] [--tools ocr] [--kinds conversation]
                                  [--max-pairs 2] [--workers 1,2] [--repeats 3] [--json FILE]
    python tools/bench_datagen.py --copy-shipped DIR    # only write the shipped images into DIR

The images are mmreact's shipped ones (the example receipt, the built-in eval set's rendered
receipt, menu, sign, table and shapes) and scikit-image's photographs, repeated with one pixel
changed when more are asked for (so every image has its own pixel hash and is really processed).
Each engine writes a fresh output folder.

local  = ``generate(engine="local")`` in this process, after a warm-up run on another image, so
         its experts and LLM are loaded (the result cache is emptied before every run);
ray-N  = ``generate(engine="ray")`` with N expert actors and N LLM actors on a local Ray cluster
         (started once, before any timing, over all this machine's CPUs, on the loopback
         address); each run starts its actors, which load their own models: that is part of
         a Ray run's cost and is in its figure.

With ``--repeats R`` the engines run in turn R times (local, ray-1, ray-2, local, ...) and the
median is shown, so drift on a busy machine hits them alike. Prints images per second for each
and the ratio to the local engine, measured in the same run.
On a machine with few cores the Ray figures show its overhead, not its scaling: the actors share
the same cores as each other. Threads per worker are the same in every engine: the embedded LLM
runs with ``--llm-threads`` llama.cpp threads (1), and the local engine's experts with
``--torch-threads`` torch threads (1, what Ray gives an actor with one CPU or less). On a
machine whose cores are busy with other work, two threads that wait for each other made
llama.cpp calls and EasyOCR reads 10-90 times slower (measured here), and that would be measured
instead of the engines.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # Ray on 127.0.0.1 (read when Ray is imported)
os.environ.pop("MMREACT_CACHE_DIR", None)  # no result cache shared between the engines' processes


def shipped_images() -> list[Path]:
    import skimage.data

    evalset = ROOT / "mmreact" / "data" / "evalset"
    photos = Path(skimage.data.__file__).parent
    return [ROOT / "examples" / "receipt.png", *sorted(evalset.glob("*.png")),
            *(photos / n for n in ("astronaut.png", "chelsea.png", "coffee.png", "horse.png", "motorcycle_left.png",
                                   "page.png", "rocket.jpg"))]


def make_folder(folder: Path, n: int) -> list[str]:
    """``n`` distinct images from the shipped ones (a copy gets one pixel changed)."""
    from PIL import Image

    sources = shipped_images()
    folder.mkdir(parents=True)
    names = []
    for i in range(n):
        src = sources[i % len(sources)]
        image = Image.open(src).convert("RGB")
        if i >= len(sources):
            image.putpixel((0, 0), (i % 256, (i // 256) % 256, 7))
        name = f"{i:03d}_{src.stem}.png"
        image.save(folder / name)
        names.append(name)
    return names


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--llm", default="default")
    ap.add_argument("--tools", default="ocr")
    ap.add_argument("--kinds", default="conversation")
    ap.add_argument("--max-pairs", type=int, default=2)
    ap.add_argument("--workers", default="1,2", help="Ray worker counts to measure")
    ap.add_argument("--repeats", type=int, default=3, help="rounds over all engines (median shown)")
    ap.add_argument("--torch-threads", type=int, default=1,
                    help="torch threads of the local engine's experts, as Ray gives a 1-CPU actor (0: torch's choice)")
    ap.add_argument("--llm-threads", type=int, default=1,
                    help="--llm default: llama.cpp threads, the same for every engine (0: the backend's choice)")
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument("--copy-shipped", metavar="DIR", help="write the shipped images into DIR and stop")
    args = ap.parse_args()
    if args.copy_shipped:
        for src in shipped_images():
            Path(args.copy_shipped).mkdir(parents=True, exist_ok=True)
            shutil.copy(src, Path(args.copy_shipped) / src.name)
        print(f"wrote {len(shipped_images())} images to {args.copy_shipped}")
        return
    import logging

    logging.getLogger("ray").setLevel(logging.ERROR)  # Ray Data's advice lines would bury the table

    from mmreact.cache import result_cache
    from mmreact.datagen import generate

    tmp = Path(tempfile.mkdtemp(prefix="bench-datagen-"))
    images = tmp / "images"
    make_folder(images, args.images)
    warm = tmp / "warm"
    warm.mkdir()
    from PIL import Image, ImageDraw, ImageFont

    sign = Image.new("RGB", (420, 120), (255, 255, 255))
    ImageDraw.Draw(sign).text((20, 30), "WARM UP 42", fill=(0, 0, 0), font=ImageFont.load_default(size=48))
    sign.save(warm / "warm.png")  # text, so the OCR finds something and the LLM runs too
    llm: object = args.llm
    if args.llm == "default" and args.llm_threads > 0:
        # The same llama.cpp settings in every engine (a Ray actor calls this to make its own).
        from mmreact.llms.gguf import GGUFLLM, default_model_path

        llm = functools.partial(GGUFLLM, default_model_path(), n_threads=args.llm_threads,
                                name="default:SmolLM2-135M-Instruct-Q4_1")
    options = dict(llm=llm, tools=args.tools.split(","), kinds=args.kinds.split(","), max_pairs=args.max_pairs)
    runs: dict[str, list[dict[str, object]]] = {}

    def measure(name: str, engine: str, **extra: object) -> None:
        out = tmp / f"out-{name}-{len(runs.get(name, []))}"
        result_cache().clear()  # a repeat must run the experts again, as a Ray run's fresh actors do
        t0 = time.perf_counter()
        summary = generate(images, out, engine=engine, **options, **extra)  # type: ignore[arg-type]
        seconds = time.perf_counter() - t0
        runs.setdefault(name, []).append({
            "engine": name, "images": summary.images, "records": summary.written, "accepted": summary.accepted,
            "llm_calls": summary.llm_calls, "seconds": round(seconds, 2),
            "images_per_s": round(summary.images / seconds, 4)})
        print(f"  {name}: {summary.line()}", file=sys.stderr, flush=True)

    print(f"{args.images} images, tools {args.tools}, kinds {args.kinds}, LLM {args.llm}; "
          f"{os.cpu_count()} CPUs", file=sys.stderr)
    if args.torch_threads > 0:
        import torch

        torch.set_num_threads(args.torch_threads)
    generate(warm, tmp / "out-warm", **options)  # loads the local models; not timed
    import ray

    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    for _ in range(args.repeats):
        measure("local", "local")
        for n in (int(w) for w in args.workers.split(",")):
            measure(f"ray-{n}", "ray", ray={"expert_workers": n, "llm_workers": n})
    ray.shutdown()
    shutil.rmtree(tmp, ignore_errors=True)
    rows = [{**rs[0], "seconds": statistics.median(r["seconds"] for r in rs),  # type: ignore[misc]
             "images_per_s": statistics.median(r["images_per_s"] for r in rs)} for rs in runs.values()]

    base = rows[0]["images_per_s"]
    print(f"{'engine':<8} {'images':>6} {'records':>7} {'LLM calls':>9} {'seconds':>8} {'images/s':>9} {'vs local':>9}")
    for r in rows:
        print(f"{r['engine']:<8} {r['images']:>6} {r['records']:>7} {r['llm_calls']:>9} {r['seconds']:>8.2f} "
              f"{r['images_per_s']:>9.3f} {r['images_per_s'] / base:>8.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows, "runs": runs}, indent=2) + "\n")


if __name__ == "__main__":
    main()
