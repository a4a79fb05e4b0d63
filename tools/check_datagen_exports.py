"""Load a datagen run's exports the way the trainers read them, and say what each reader got.

    python tools/check_datagen_exports.py OUT [--llamafactory SRC]

- ``sharegpt``: with ``--llamafactory SRC`` (the ``src`` folder of a LLaMA-Factory checkout),
  LLaMA-Factory's own reading code: ``get_dataset_list`` reads ``dataset_info.json``,
  ``datasets.load_dataset`` the file, and ``SharegptDatasetConverter`` turns each row into the
  prompt / response / images LLaMA-Factory trains on, with ``media_dir`` set to the run's image
  folder. Only the modules those need are loaded (two constants modules are stood in for: the
  rest of LLaMA-Factory wants peft, trl, omegaconf and more); a row it marks broken (empty
  prompt) or whose image path does not exist counts as a failure.
- ``llava``: the reading steps of LLaVA's ``LazySupervisedDataset``: a JSON list, each image
  opened from ``--image_folder`` and converted to RGB, ``<image>`` in the first human turn,
  turns alternating human / gpt.
- ``openai``: the rules of OpenAI's vision fine-tuning format: every line a ``messages`` list
  whose roles alternate user / assistant, the image a ``data:`` URL of a JPEG, PNG or WEBP in
  RGB or RGBA of at most 10 MB.

Each export is written first (``mmreact datagen export OUT --format F``). Prints one line per
format: rows read, rows that failed.
"""

from __future__ import annotations

import argparse
import base64
import importlib.util
import io
import json
import sys
import tempfile
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _load(name: str, path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def llamafactory(src: Path, folder: Path, media_dir: Path) -> tuple[int, list[str]]:
    """Rows LLaMA-Factory's parser and ShareGPT converter read from ``folder``, and the failures."""
    from datasets import load_dataset

    pkg = src / "llamafactory"
    for name in ("llamafactory", "llamafactory.extras", "llamafactory.data", "llamafactory.hparams"):
        module = types.ModuleType(name)
        module.__path__ = []  # a package, filled below
        sys.modules[name] = module
    constants = types.ModuleType("llamafactory.extras.constants")
    constants.RUNNING_LOG, constants.DATA_CONFIG = "running_log.txt", "dataset_info.json"
    misc = types.ModuleType("llamafactory.extras.misc")
    misc.use_modelscope = misc.use_openmind = lambda: False
    sys.modules.update({"llamafactory.extras.constants": constants, "llamafactory.extras.misc": misc})
    _load("llamafactory.extras.logging", pkg / "extras" / "logging.py")
    _load("llamafactory.data.data_utils", pkg / "data" / "data_utils.py")
    converter = _load("llamafactory.data.converter", pkg / "data" / "converter.py")
    parser = _load("llamafactory.data.parser", pkg / "data" / "parser.py")
    data_args = _load("llamafactory.hparams.data_args", pkg / "hparams" / "data_args.py")
    args = data_args.DataArguments(dataset="mmreact_datagen", dataset_dir=str(folder), media_dir=str(media_dir))
    (attr,) = parser.get_dataset_list(["mmreact_datagen"], str(folder))
    rows = load_dataset("json", data_files=str(folder / attr.dataset_name), split="train")
    convert = converter.SharegptDatasetConverter(attr, args)
    failures = []
    for i, row in enumerate(rows):
        out = convert(row)
        if not out["_prompt"] or not out["_response"]:
            failures.append(f"row {i}: LLaMA-Factory skipped it as broken")
        for image in out["_images"] or []:
            if not Path(image).is_file():
                failures.append(f"row {i}: no image at {image}")
    return len(rows), failures


def llava(path: Path, image_folder: Path) -> tuple[int, list[str]]:
    from PIL import Image

    rows = json.loads(path.read_text(encoding="utf-8"))
    failures = []
    for i, row in enumerate(rows):
        try:
            Image.open(image_folder / row["image"]).convert("RGB")
        except OSError as exc:
            failures.append(f"row {i}: {exc}")
        turns = row["conversations"]
        if [t["from"] for t in turns] != ["human", "gpt"] * (len(turns) // 2) or "<image>" not in turns[0]["value"]:
            failures.append(f"row {i}: turns or <image> out of place")
    return len(rows), failures


def openai(path: Path) -> tuple[int, list[str]]:
    from PIL import Image

    lines = path.read_text(encoding="utf-8").splitlines()
    failures = []
    for i, line in enumerate(lines):
        messages = json.loads(line)["messages"]
        if [m["role"] for m in messages] != ["user", "assistant"] * (len(messages) // 2):
            failures.append(f"line {i + 1}: roles do not alternate")
        for part in messages[0]["content"]:
            if part["type"] != "image_url":
                continue
            head, data = part["image_url"]["url"].split(",", 1)
            raw = base64.b64decode(data)
            im = Image.open(io.BytesIO(raw))
            if im.format not in ("JPEG", "PNG", "WEBP") or im.mode not in ("RGB", "RGBA") or len(raw) > 10_000_000:
                failures.append(f"line {i + 1}: {im.format} {im.mode} {len(raw)} bytes")
            if head != f"data:image/{im.format.lower()};base64":
                failures.append(f"line {i + 1}: {head} for a {im.format}")
    return len(lines), failures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", help="a datagen output folder")
    ap.add_argument("--llamafactory", help="the src/ folder of a LLaMA-Factory checkout")
    args = ap.parse_args()
    from mmreact.datagen import export
    from mmreact.datagen._store import Store

    out = Path(args.out)
    images = Path(Store.existing(out).run_info()["images_dir"])
    tmp = Path(tempfile.mkdtemp(prefix="datagen-exports-"))
    results = {"llava": llava(Path(export(out, "llava", tmp / "llava.json").path), images),
               "openai": openai(Path(export(out, "openai", tmp / "openai.jsonl").path))}
    if args.llamafactory:
        (tmp / "lf").mkdir()
        export(out, "sharegpt", tmp / "lf" / "sharegpt.json")
        results["sharegpt (LLaMA-Factory)"] = llamafactory(Path(args.llamafactory), tmp / "lf", images)
    for name, (n, failures) in results.items():
        print(f"{name}: {n} rows read, {len(failures)} failed" + (f": {failures[:3]}" if failures else ""))


if __name__ == "__main__":
    main()
