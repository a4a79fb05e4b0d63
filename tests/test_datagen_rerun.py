"""mmreact datagen keys its records on what each image is (its pixels), not on its name: a rerun
over another folder with the same names is refused, an image replaced in place is made again, a
deleted or changed image never reaches an export; and the exports are files each trainer takes
as they are (OpenAI's image rules, LLaMA-Factory's dataset_info.json and media_dir)."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import re

import pytest
from datagen_helpers import context_of, kind_of, tiny_images
from PIL import Image

from mmreact.datagen import export, generate
from mmreact.datagen.records import Reason, Record
from mmreact.datagen._store import RECORDS_FILE, Store
from mmreact.errors import ConfigError
from mmreact.images import load_image
from mmreact.llms import ScriptedLLM

ROOT = Path(__file__).resolve().parents[1]


WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa".split()


def reply(request) -> str:
    """A reply about the one thing each image's context names (so no pair is said on every image)."""
    word = re.search(r"room (\w+)", context_of(request)).group(1)
    if kind_of(request) == "detail":
        return f"A blue cup stands on a table in room {word}."
    return f"Question:\nWhere is the cup?\n===\nAnswer:\nThe cup is on a table in room {word}."


def llm() -> ScriptedLLM:
    return ScriptedLLM([reply], repeat_last=True, name="scripted:rooms")


def run(images: Path, out: Path, model: ScriptedLLM | None = None, **options):
    """Both kinds over ``images``, each image's context a caption naming its own room."""
    ann = images.parent / f"{images.name}.jsonl"
    names = sorted(p.name for p in images.iterdir())
    ann.write_text("".join(json.dumps({"image": n, "captions": [f"A blue cup on a table in room {WORDS[i]}."]}) + "\n"
                           for i, n in enumerate(names)))
    return generate(images, out, llm=model or llm(), annotations=[ann], kinds=["conversation", "detail"], **options)


def repaint(path: Path, colour: tuple[int, int, int]) -> None:
    Image.new("RGB", (40, 30), colour).save(path)


def shas(out: Path) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for r in Store.existing(out).records():
        found.setdefault(r.image, set()).add(r.image_sha256)
    return found


# -- section 1: reruns --------------------------------------------------------------------------
def test_the_same_names_in_another_folder_are_refused_and_the_run_is_kept(tmp_path):
    names = tiny_images(tmp_path / "fA", 2)
    tiny_images(tmp_path / "fB", 2)
    for i, name in enumerate(names):  # same names, other pictures
        repaint(tmp_path / "fB" / name, (200, 10 * i, 30))
    run(tmp_path / "fA", tmp_path / "X")
    before = (tmp_path / "X" / RECORDS_FILE).read_text()
    model = llm()
    with pytest.raises(ConfigError, match=r"made from .*fA, and 2 of the images of the same names in .*fB are other "
                                          r"pictures \(img000.png, img001.png\); use another --out"):
        run(tmp_path / "fB", tmp_path / "X", model)
    assert model.requests == [] and (tmp_path / "X" / RECORDS_FILE).read_text() == before
    assert Store.existing(tmp_path / "X").run_info()["images_dir"] == str((tmp_path / "fA").resolve())
    rows = json.loads(Path(export(tmp_path / "X", "llava").path).read_text())
    assert len(rows) == 4  # still fA's text with fA's pictures
    # the same folder moved (same pixels): resumed, nothing to do
    (tmp_path / "fA").rename(tmp_path / "moved")
    again = run(tmp_path / "moved", tmp_path / "X", model)
    assert again.written == 0 and again.skipped_images == 2 and model.requests == []


def test_an_image_replaced_in_place_is_made_again_and_its_old_text_goes(tmp_path):
    names = tiny_images(tmp_path / "imgs", 3)
    run(tmp_path / "imgs", tmp_path / "out")
    old = shas(tmp_path / "out")[names[1]]
    os.utime(tmp_path / "imgs" / names[0], ns=(1, 1))  # touched, same pixels: not made again
    repaint(tmp_path / "imgs" / names[1], (1, 2, 3))
    model = llm()
    again = run(tmp_path / "imgs", tmp_path / "out", model)
    assert again.replaced == 1 and len(model.requests) == 2 and again.written == 2 and again.skipped_images == 2
    assert "1 changed since the last run, made again" in again.line()
    new = load_image(tmp_path / "imgs" / names[1]).sha256
    assert shas(tmp_path / "out")[names[1]] == {new} and old != {new}
    records = Store.existing(tmp_path / "out").records()
    assert len(records) == 6 and all(r.file_stat for r in records)
    rows = json.loads(Path(export(tmp_path / "out", "llava").path).read_text())
    assert sorted(r["id"] for r in rows if r["image"] == names[1]) == [f"{new[:16]}-conversation", f"{new[:16]}-detail"]


def test_a_broken_image_that_was_fixed_is_made_again(tmp_path):
    tiny_images(tmp_path / "imgs", 1)
    (tmp_path / "imgs" / "late.png").write_bytes(b"not yet an image")
    first = run(tmp_path / "imgs", tmp_path / "out")
    assert first.errors == 2
    repaint(tmp_path / "imgs" / "late.png", (9, 9, 9))
    again = run(tmp_path / "imgs", tmp_path / "out")
    assert again.replaced == 1 and again.accepted == 2
    assert {r.status for r in Store.existing(tmp_path / "out").records() if r.image == "late.png"} == {"accepted"}


def test_exports_leave_out_deleted_and_changed_images_and_follow_a_moved_folder(tmp_path):
    names = tiny_images(tmp_path / "imgs", 3)
    run(tmp_path / "imgs", tmp_path / "out")
    (tmp_path / "imgs" / names[0]).unlink()
    repaint(tmp_path / "imgs" / names[1], (7, 7, 7))
    for fmt in ("llava", "sharegpt", "openai"):
        summary = export(tmp_path / "out", fmt)
        assert summary.written == 2 and summary.stale == 4, fmt
        assert f"left out 4 records whose image is missing or changed since they were made ({names[0]}, " \
               f"{names[1]})" in summary.line()
    rows = [json.loads(line) for line in (tmp_path / "out" / "openai.jsonl").read_text().splitlines()]
    assert len(rows) == 2
    (tmp_path / "imgs").rename(tmp_path / "elsewhere")
    with pytest.raises(ConfigError, match=r"The image folder .*imgs \(where the run read them\) is not there; give "
                                          r"its new place with --images DIR"):
        export(tmp_path / "out", "llava")
    assert export(tmp_path / "out", "llava", images_dir=tmp_path / "elsewhere").written == 2
    proc = subprocess.run([sys.executable, "-m", "mmreact", "datagen", "export", str(tmp_path / "out"), "--format",
                           "openai", "--images", str(tmp_path / "elsewhere")], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0 and "wrote 2 conversations" in proc.stdout, proc.stderr


def test_a_later_line_never_replaces_an_earlier_accepted_record(tmp_path):
    names = tiny_images(tmp_path / "imgs", 1)
    run(tmp_path / "imgs", tmp_path / "out")
    store = Store.existing(tmp_path / "out")
    good = next(r for r in store.records() if r.kind == "conversation")
    assert good.status == "accepted"
    retried = good.with_(status="error", error="the LLM actor died", pairs=(), kept=(), reasons=())
    rejected = good.with_(status="rejected", kept=(), reasons=(Reason("structure", "x"),))
    shard = tmp_path / "out" / "shards"
    shard.mkdir()
    (shard / "a.jsonl").write_text(retried.to_json() + "\n" + rejected.to_json() + "\n")
    assert {(r.id, r.status) for r in store.records() if r.image == names[0]} == {
        (good.id, "accepted"), (good.id.replace("conversation", "detail"), "accepted")}
    # an error first, then a success, then another error: the success stays
    error_first = [retried, good, retried]
    (tmp_path / "out" / RECORDS_FILE).write_text("".join(r.to_json() + "\n" for r in error_first))
    assert [r.status for r in store.records()] == ["accepted"]


# -- section 3: exports a trainer takes as they are ---------------------------------------------
def sources(folder: Path) -> dict[str, Image.Image]:
    """The six kinds of image OpenAI's fine-tuning rejected as they were: GIF, palette PNG, TIFF,
    BMP, grey, CMYK JPEG; and a PNG over 10 MB."""
    import numpy as np

    folder.mkdir()
    def rgb(i: int) -> Image.Image:  # each its own pixels (a copy would be rejected as a duplicate)
        return Image.new("RGB", (64, 48), (20 * i, 120, 220))

    made = {"anim.gif": rgb(1).convert("P"), "palette.png": rgb(2).convert("P"), "scan.tif": rgb(3),
            "old.bmp": rgb(4), "grey.png": rgb(5).convert("L"), "print.jpg": rgb(6).convert("CMYK")}
    for name, im in made.items():
        if name.endswith(".gif"):
            im.save(folder / name, save_all=True, append_images=[Image.new("P", (64, 48), 3)])
        else:
            im.save(folder / name)
    noise = np.random.default_rng(0).integers(0, 256, (2100, 2100, 3), dtype=np.uint8)
    Image.fromarray(noise).save(folder / "huge.png")
    assert (folder / "huge.png").stat().st_size > 10_000_000
    Image.new("RGBA", (30, 20), (1, 2, 3, 100)).save(folder / "alpha.png")  # taken as it is
    return made


def decode(url: str) -> tuple[str, Image.Image, int]:
    head, data = url.split(",", 1)
    raw = base64.b64decode(data)
    return head, Image.open(io.BytesIO(raw)), len(raw)


def test_openai_export_re_encodes_what_openai_would_reject(tmp_path):
    sources(tmp_path / "imgs")
    run(tmp_path / "imgs", tmp_path / "out")
    export(tmp_path / "out", "openai")
    rows = [json.loads(line) for line in (tmp_path / "out" / "openai.jsonl").read_text().splitlines()]
    assert len(rows) == 2 * 8
    by_image = {}
    for row in rows:
        first = row["messages"][0]["content"]
        assert first[0]["type"] == "text" and first[1]["type"] == "image_url"
        head, im, size = decode(first[1]["image_url"]["url"])
        assert im.format in ("JPEG", "PNG", "WEBP") and im.mode in ("RGB", "RGBA") and size <= 10_000_000
        assert head == f"data:image/{im.format.lower()};base64"
        by_image.setdefault(head + str(im.size), im)
    records = {r.image: r for r in Store.existing(tmp_path / "out").records() if r.kind == "detail"}
    # the pixels are those the experts saw (what the record's hash is of), not something else
    for name in ("anim.gif", "palette.png", "scan.tif", "old.bmp", "grey.png", "print.jpg"):
        url = next(r["messages"][0]["content"][1]["image_url"]["url"] for r in rows
                   if r["messages"][1]["content"][0]["text"] == records[name].kept_pairs[0]["answer"])
        _, im, _ = decode(url)
        assert load_image(im).sha256 == records[name].image_sha256, name
    huge = next(r["messages"][0]["content"][1]["image_url"]["url"] for r in rows
                if r["messages"][1]["content"][0]["text"] == records["huge.png"].kept_pairs[0]["answer"])
    head, im, size = decode(huge)
    assert head == "data:image/jpeg;base64" and size <= 10_000_000 and im.size[0] >= 1000
    alpha = next(r["messages"][0]["content"][1]["image_url"]["url"] for r in rows
                 if r["messages"][1]["content"][0]["text"] == records["alpha.png"].kept_pairs[0]["answer"])
    assert base64.b64decode(alpha.split(",", 1)[1]) == (tmp_path / "imgs" / "alpha.png").read_bytes()


def test_openai_first_text_part_is_the_question(tmp_path):
    tiny_images(tmp_path / "imgs", 2)
    run(tmp_path / "imgs", tmp_path / "out")
    export(tmp_path / "out", "openai")
    rows = [json.loads(line) for line in (tmp_path / "out" / "openai.jsonl").read_text().splitlines()]
    records = sorted((r for r in Store.existing(tmp_path / "out").records() if r.status == "accepted"),
                     key=lambda r: (r.image, r.kind, r.id))
    assert len(rows) == len(records) == 4
    for row, record in zip(rows, records):
        turns = row["messages"]
        assert turns[0]["content"][0]["text"] == record.kept_pairs[0]["question"]
        assert [m["content"][0]["text"] for m in turns[1::2]] == [p["answer"] for p in record.kept_pairs]


def test_sharegpt_export_merges_dataset_info_and_names_the_media_dir(tmp_path):
    names = tiny_images(tmp_path / "imgs", 2)
    run(tmp_path / "imgs", tmp_path / "out")
    data = tmp_path / "data"
    data.mkdir()
    mine = {"alpaca_en_demo": {"file_name": "alpaca_en_demo.json"}, "mllm_demo": {"file_name": "mllm_demo.json",
                                                                                 "formatting": "sharegpt"}}
    (data / "dataset_info.json").write_text(json.dumps(mine))
    summary = export(tmp_path / "out", "sharegpt", data / "cups.json", dataset_name="cups")
    assert summary.written == 4 and f"in LLaMA-Factory set media_dir: {(tmp_path / 'imgs').resolve()}" in summary.line()
    info = json.loads((data / "dataset_info.json").read_text())
    assert info["alpaca_en_demo"] == mine["alpaca_en_demo"] and info["mllm_demo"] == mine["mllm_demo"]
    assert info["cups"] == {"file_name": "cups.json", "formatting": "sharegpt",
                            "columns": {"messages": "conversations", "images": "images"},
                            "tags": {"role_tag": "from", "content_tag": "value", "user_tag": "human",
                                     "assistant_tag": "gpt"}}
    export(tmp_path / "out", "sharegpt", data / "cups.json", dataset_name="cups")  # again: one entry, updated
    assert list(json.loads((data / "dataset_info.json").read_text())) == ["alpaca_en_demo", "mllm_demo", "cups"]
    rows = json.loads((data / "cups.json").read_text())
    assert {r["images"][0] for r in rows} == set(names)
    (data / "dataset_info.json").write_text("{not json")
    with pytest.raises(ConfigError, match="dataset_info.json is not readable JSON"):
        export(tmp_path / "out", "sharegpt", data / "cups.json")


def test_records_written_by_an_older_mmreact_still_export(tmp_path):
    """Records without ``file_stat`` (written before it existed) are checked by their pixels."""
    tiny_images(tmp_path / "imgs", 2)
    run(tmp_path / "imgs", tmp_path / "out")
    path = tmp_path / "out" / RECORDS_FILE
    old = [Record.from_dict({**json.loads(line), "file_stat": None}) for line in path.read_text().splitlines()]
    path.write_text("".join(r.to_json() + "\n" for r in old))
    assert export(tmp_path / "out", "llava").written == 4
