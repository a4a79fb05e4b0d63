"""mmreact datagen end to end: real OCR over rendered images, a scripted LLM that plants faults,
the store (resume, refusal to mix configurations, kill -9), the exports (LLaVA's invariants, and
each format loaded by ``datasets``), templates, and the command line."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from kill9 import kill_after_lines
from datagen_helpers import CountingLLM, annotations_file, image_folder, planted_llm, tiny_images

from mmreact import Image, tool
from mmreact.datagen import export, generate, make_templates, refilter
from mmreact.datagen.exports import check_conversation
from mmreact.datagen.records import Record
from mmreact.datagen.report import summarize
from mmreact.datagen._store import RECORDS_FILE, Store
from mmreact.datagen.templates import TEMPLATES, instruction, items_from_run
from mmreact.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


@tool
def brightness(image: Image) -> str:
    """Mean brightness of the image."""
    return str(image.to_numpy().mean())


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One run over receipt, sign, a copy of the receipt and a broken file, with real OCR."""
    root = tmp_path_factory.mktemp("datagen")
    images = image_folder(root)
    llm = planted_llm()
    summary = generate(images, root / "out", llm=llm, tools=["ocr"], cleanup=True)
    return {"images": images, "out": root / "out", "summary": summary, "llm": llm}


def by(records: list[Record]) -> dict[tuple[str, str], Record]:
    return {(r.image, r.kind): r for r in records}


def test_records_carry_context_reply_and_verdict(run):
    records = Store.existing(run["out"]).records()
    table = by(records)
    assert len(records) == 12 and len(table) == 12  # 4 files x 3 kinds, each once
    conv = table[("receipt.png", "conversation")]
    assert conv.status == "accepted" and conv.kept == (0,)
    assert conv.kept_pairs[0]["answer"] == "The top line says CORNER CAFE."  # read by the real OCR
    assert {(r.filter, r.pair) for r in conv.reasons} == {("hallucination", 1), ("leakage", 2), ("facts", 2),
                                                          ("refusal", 3)}
    assert conv.context["ocr"][:2] == ["CORNER CAFE", "12 Main Street"] and "TOTAL 7.75" in conv.prompt_context
    assert conv.format_ok and conv.llm["calls"] == 1 and conv.id == f"{conv.image_sha256[:16]}-conversation"
    detail = table[("receipt.png", "detail")]  # cleanup rewrote the leaky description
    assert detail.status == "accepted" and detail.raw.startswith("The caption says") and detail.llm["calls"] == 2
    assert detail.cleaned == "The image shows CORNER CAFE in large letters."
    assert detail.kept_pairs[0]["answer"] == detail.cleaned and detail.kept_pairs[0]["question"].endswith((".", "?"))
    sign = table[("sign.png", "reasoning")]
    assert sign.status == "rejected" and sign.reasons[0].filter == "structure"
    assert table[("receipt.png", "reasoning")].status == "accepted"
    for kind in ("conversation", "detail", "reasoning"):
        copy = table[("sub/receipt_copy.png", kind)]
        assert copy.status == "rejected" and copy.reasons[0].filter == "duplicate" and copy.raw is None
        broken = table[("broken.png", kind)]
        assert broken.status == "error" and "image" in broken.error.lower()
    assert len(run["llm"].requests) == 2 * 3 + 2  # no LLM call for the copy or the broken file; 2 cleanups
    summary = run["summary"]
    assert (summary.written, summary.accepted, summary.rejected, summary.errors) == (12, 5, 4, 3)


def test_prompt_is_system_then_examples_then_the_context(run):
    request = next(r for r in run["llm"].requests if "Write a conversation" in r.messages[0].content)
    roles = [m.role for m in request.messages]
    assert roles[0] == "system" and roles[-1] == "user" and roles[1:-1] == ["user", "assistant"] * 2
    assert request.kind == "text" and request.text_format is not None and request.text_format.name.startswith("llava")
    assert "[" not in request.messages[-1].content  # conversations are written without boxes


def test_report_counts_by_kind_and_reason(run):
    rep = summarize(Store.existing(run["out"]).records())
    assert rep.totals == Counter({"accepted": 5, "rejected": 4, "error": 3})
    assert rep.rejected_by == Counter({"duplicate": 3, "structure": 1})
    assert rep.pairs_dropped_by == Counter({"hallucination": 2, "leakage": 2, "facts": 2, "refusal": 2})
    assert "| duplicate | 3 | 0 |" in rep.markdown()


def test_llava_export_keeps_llavas_invariants(run, tmp_path):
    summary = export(run["out"], "llava", tmp_path / "llava.json")
    data = json.loads((tmp_path / "llava.json").read_text())
    assert summary.written == len(data) == 5 and summary.errors == 3 and summary.rejected == 4
    assert len({d["id"] for d in data}) == len(data)
    for d in data:
        assert set(d) == {"id", "image", "conversations"} and (run["images"] / d["image"]).is_file()
        turns = d["conversations"]
        assert check_conversation(turns) is None
        assert turns[0]["value"].startswith("<image>\n")
        assert sum(t["value"].count("<image>") for t in turns) == 1
        assert [t["from"] for t in turns] == ["human", "gpt"] * (len(turns) // 2)
        text = " ".join(t["value"] for t in turns)
        assert "dog" not in text and "[0." not in text and "sorry" not in text.lower()


def test_every_export_format_loads_with_datasets(run, tmp_path):
    from datasets import load_dataset

    for fmt in ("llava", "sharegpt", "openai"):
        summary = export(run["out"], fmt, tmp_path / f"{fmt}.out")
        ds = load_dataset("json", data_files=str(tmp_path / f"{fmt}.out"), split="train")
        assert len(ds) == summary.written == 5, fmt
    sharegpt = json.loads((tmp_path / "sharegpt.out").read_text())
    assert all(r["images"][0] in ("receipt.png", "sign.png") and r["conversations"][0]["from"] == "human"
               for r in sharegpt)
    info = json.loads((tmp_path / "dataset_info.json").read_text())["mmreact_datagen"]
    assert info["formatting"] == "sharegpt" and info["columns"] == {"messages": "conversations", "images": "images"}
    row = json.loads((tmp_path / "openai.out").read_text().splitlines()[0])
    first = row["messages"][0]
    assert first["role"] == "user" and first["content"][1]["type"] == "image_url"
    url = first["content"][1]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    assert base64.b64decode(url.split(",", 1)[1]) in {(run["images"] / n).read_bytes() for n in
                                                      ("receipt.png", "sign.png")}
    assert [m["role"] for m in row["messages"]] == ["user", "assistant"] * (len(row["messages"]) // 2)
    prefixed = export(run["out"], "llava", tmp_path / "p.json", image_prefix="/data/imgs", kinds=["detail"])
    assert prefixed.written == 2
    assert {d["image"] for d in json.loads((tmp_path / "p.json").read_text())} == {"/data/imgs/receipt.png",
                                                                                   "/data/imgs/sign.png"}


def test_rerun_resumes_with_nothing_to_do(run):
    before = (run["out"] / RECORDS_FILE).read_text()
    llm = planted_llm()
    again = generate(run["images"], run["out"], llm=llm, tools=["ocr"], cleanup=True)
    assert again.written == 0 and again.skipped_images == 4 and llm.requests == []
    assert (run["out"] / RECORDS_FILE).read_text() == before


def test_resuming_with_another_configuration_is_refused(run, tmp_path):
    import shutil

    from mmreact.datagen.prompts import _shipped_root

    prompts = Path(shutil.copytree(_shipped_root(), tmp_path / "prompts"))
    (prompts / "conversation" / "system_message.txt").write_text("Write a conversation about the image.")
    cases = [({"kinds": ["conversation"]}, "kinds"), ({"cleanup": False}, "cleanup"),
             ({"llm": CountingLLM()}, "LLM"), ({"reply_format": "json"}, "reply format"),
             ({"tools": ["ocr", brightness]}, "tools"), ({"few_shot": prompts}, "prompts")]
    for change, word in cases:
        options = {"llm": planted_llm(), "tools": ["ocr"], "cleanup": True, **change}
        with pytest.raises(ConfigError, match=f"another configuration.*{word}"):
            generate(run["images"], run["out"], **options)


def test_refilter_reruns_the_filters_without_model_calls(run, tmp_path):
    import shutil

    out = Path(shutil.copytree(run["out"], tmp_path / "copy"))
    records = Store.existing(out).records()
    # As if an older mmreact had accepted every text: refilter restores the verdicts.
    lax = [r.with_(status="accepted", kept=tuple(range(len(r.pairs))),
                   reasons=tuple(x for x in r.reasons if x.filter == "duplicate")) if r.status != "error" else r
           for r in records]
    (out / RECORDS_FILE).write_text("".join(r.to_json() + "\n" for r in lax))
    report = refilter(out)
    assert report.totals == Counter({"accepted": 5, "rejected": 4, "error": 3})
    assert by(Store.existing(out).records()) == by(records)


def test_weak_labels_from_a_run_make_template_records(run, tmp_path):
    items, images_dir = items_from_run(run["out"])
    assert Path(images_dir) == run["images"].resolve()
    assert {i["task"] for i in items} == {"ocr"}  # only OCR ran
    written, _ = make_templates(items, images_dir, tmp_path / "tpl")
    assert written == len(items) == 2  # receipt and sign (the copy was never read: a duplicate)
    summary = export(tmp_path / "tpl", "llava", tmp_path / "tpl.json")
    assert summary.written == 2 and summary.rejected == 0
    data = json.loads((tmp_path / "tpl.json").read_text())
    receipt = next(d for d in data if d["image"] == "receipt.png")
    assert receipt["conversations"][1]["value"].startswith("CORNER CAFE\n12 Main Street")
    assert receipt["conversations"][0]["value"].removeprefix("<image>\n") in TEMPLATES["ocr"]


# -- templates -----------------------------------------------------------------------------------
def test_templates_from_labels(tmp_path):
    names = tiny_images(tmp_path / "imgs", 2)
    labels = [
        {"image": names[0], "task": "vqa", "question": "What colour is it?", "answer": "blue",
         "options": ["red", "blue"]},
        {"image": names[0], "task": "caption", "caption": "A blue square."},
        {"image": names[0], "task": "grounding", "label": "square", "box": [0, 0, 20, 15]},
        {"image": names[1], "task": "region", "box": [10, 0, 40, 30], "caption": "the right half"},
        {"image": names[1], "task": "count", "label": "box", "count": 3},
        {"image": names[1], "task": "ocr", "text": "NO TEXT"},
        {"image": names[1], "task": "objects", "labels": ["square", "square", "corner"]},
        {"image": "missing.png", "task": "caption", "caption": "gone"},
    ]
    written, _ = make_templates(labels, tmp_path / "imgs", tmp_path / "out", seed=3)
    assert written == 8
    stored = Store.existing(tmp_path / "out").records()
    assert [r.status for r in stored if r.image == "missing.png"] == ["error"]
    records = {r.kind: r for r in stored if r.image != "missing.png"}
    assert all(r.status == "accepted" for r in records.values()) and len(records) == 7
    q, a = records["template-vqa"].pairs[0]["question"], records["template-vqa"].pairs[0]["answer"]
    assert q.endswith("\n[Options]: red||||blue") and a == "blue"
    assert records["template-grounding"].pairs[0]["answer"] == "[0.0, 0.0, 0.5, 0.5]"
    assert "[0.25, 0.0, 1.0, 1.0]" in records["template-region"].pairs[0]["question"]
    assert "boxes" in records["template-count"].pairs[0]["question"] and records["template-count"].pairs[0][
        "answer"] == "3"
    assert records["template-objects"].pairs[0]["answer"] == "square, corner"
    assert make_templates(labels, tmp_path / "imgs", tmp_path / "out", seed=3) == (0, 7)  # resumed: nothing new
    picks = {instruction({"task": "caption", "caption": "x"}, 10, 10, seed=s, key="k")[0] for s in range(30)}
    assert len(picks) > 1 and picks <= set(TEMPLATES["caption"])  # the seed picks among the templates
    with pytest.raises(ConfigError, match="not one of the options"):
        instruction({"task": "vqa", "question": "Q?", "answer": "green", "options": ["red"]}, 10, 10)
    with pytest.raises(ConfigError, match="needs \"label\""):
        instruction({"task": "count", "count": 2}, 10, 10)


# -- annotations, counts, cost -------------------------------------------------------------------
def test_user_annotations_replace_the_experts_and_counts_are_checked(tmp_path):
    names = tiny_images(tmp_path / "imgs", 2)
    ann = annotations_file(tmp_path / "ann.jsonl", names)
    replies = ["Question:\nHow many cups?\n===\nAnswer:\nThere are two cups.\n===\n"
               "Question:\nAnd now?\n===\nAnswer:\nThere are three cups on the table.",
               "Question:\nWhat is there?\n===\nAnswer:\nTwo blue cups."]
    from mmreact.llms import ScriptedLLM

    summary = generate(tmp_path / "imgs", tmp_path / "out", llm=ScriptedLLM(replies), annotations=[ann],
                       kinds=["conversation"])
    assert summary.accepted == 2
    first = by(Store.existing(tmp_path / "out").records())[(names[0], "conversation")]
    assert first.kept == (0,) and [(r.filter, r.pair) for r in first.reasons] == [("count", 1)]
    assert first.context["objects"][0] == {"label": "cup", "box": [0.025, 0.033, 0.25, 0.333],
                                           "source": "annotation", "confidence": None}


def test_coco_annotations(tmp_path):
    from mmreact.datagen._annotations import annotation_context, load_annotations

    tiny_images(tmp_path, 1)
    (tmp_path / "instances.json").write_text(json.dumps({
        "images": [{"id": 7, "file_name": "img000.png", "width": 40, "height": 30}],
        "annotations": [{"image_id": 7, "category_id": 18, "bbox": [4, 3, 16, 12]}],
        "categories": [{"id": 18, "name": "dog"}]}))
    (tmp_path / "captions.json").write_text(json.dumps({
        "images": [{"id": 7, "file_name": "img000.png"}], "annotations": [{"image_id": 7, "caption": "A dog."}]}))
    table = load_annotations([tmp_path / "instances.json", tmp_path / "captions.json"])
    ctx = annotation_context(table["img000.png"], 40, 30)
    assert ctx.captions == ("A dog.",) and ctx.objects[0].box == (0.1, 0.1, 0.5, 0.5) and ctx.detected
    (tmp_path / "bad.jsonl").write_text('{"image": "a.png", "objects": [{"label": "x"}]}\n')
    with pytest.raises(ConfigError, match="line 1"):
        load_annotations([tmp_path / "bad.jsonl"])


def test_max_cost_stops_scheduling_and_a_rerun_goes_on(tmp_path):
    names = tiny_images(tmp_path / "imgs", 6)
    ann = annotations_file(tmp_path / "ann.jsonl", names)
    llm = CountingLLM(prompt_tokens=1000, completion_tokens=100)  # $0.0012 a call at 1,2 $/M
    options = dict(llm=llm, annotations=[ann], kinds=["conversation"], price="1,2", batch_size=2)
    first = generate(tmp_path / "imgs", tmp_path / "out", max_cost=0.003, **options)
    assert first.stopped == "budget" and llm.calls == 3 and first.cost == pytest.approx(0.0036)
    second = generate(tmp_path / "imgs", tmp_path / "out", **options)
    assert second.stopped is None and llm.calls == 6 and second.skipped_images == 3
    with pytest.raises(ConfigError, match="needs --price"):
        generate(tmp_path / "imgs", tmp_path / "out2", llm=llm, annotations=[ann], max_cost=1.0)


def test_concurrent_llm_calls_give_the_same_records(tmp_path):
    names = tiny_images(tmp_path / "imgs", 5)
    ann = annotations_file(tmp_path / "ann.jsonl", names)
    outs = []
    for n in (1, 4):
        generate(tmp_path / "imgs", tmp_path / f"out{n}", llm=planted_llm(), annotations=[ann], concurrency=n)
        outs.append(sorted(r.to_json().replace(f"out{n}", "") for r in Store.existing(tmp_path / f"out{n}").records()
                           for r in [r.with_(llm={})]))
    assert outs[0] == outs[1] and len(outs[0]) == 15


def test_no_ready_expert_and_bad_inputs_are_one_sentence(tmp_path, monkeypatch):
    names = tiny_images(tmp_path / "imgs", 1)
    with pytest.raises(ConfigError, match="No image folder"):
        generate(tmp_path / "nope", tmp_path / "out", llm=planted_llm())
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="No images"):
        generate(tmp_path / "empty", tmp_path / "out", llm=planted_llm())
    with pytest.raises(ConfigError, match="cannot run here"):
        monkeypatch.setenv("MMREACT_DETECT_MODEL", "no_such_weights.pt")
        from mmreact.tools.registry import discover

        discover(refresh=True)
        generate(tmp_path / "imgs", tmp_path / "out", llm=planted_llm(), tools=["detect"])
    discover(refresh=True)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty"):
        generate(tmp_path / "imgs", tmp_path / "other", llm=planted_llm(), annotations=[
            annotations_file(tmp_path / "a.jsonl", names)])


def test_store_reads_repeats_once_and_refuses_garbage(tmp_path):
    names = tiny_images(tmp_path / "imgs", 2)
    ann = annotations_file(tmp_path / "ann.jsonl", names)
    generate(tmp_path / "imgs", tmp_path / "out", llm=planted_llm(), annotations=[ann], kinds=["conversation"])
    store = Store.existing(tmp_path / "out")
    lines = (tmp_path / "out" / RECORDS_FILE).read_text().splitlines()
    shard = tmp_path / "out" / "shards"
    shard.mkdir()
    (shard / "a.jsonl").write_text(lines[0] + "\n" + lines[1][:40])  # a repeat, and a torn last line
    assert len(store.records()) == 2
    (shard / "b.jsonl").write_text("not json\n" + lines[0] + "\n")
    with pytest.raises(ConfigError, match="b.jsonl, line 1"):
        store.records()


# -- kill -9 ---------------------------------------------------------------------------------------
KILL_SCRIPT = """
import sys, time
from mmreact.datagen import generate
from mmreact.llms import ScriptedLLM

def slow(request):
    time.sleep(0.1)
    return "Question:\\nWhat is on the table?\\n===\\nAnswer:\\nTwo blue cups."

generate(sys.argv[1], sys.argv[2], llm=ScriptedLLM([slow], repeat_last=True), annotations=[sys.argv[3]],
         kinds=["conversation", "reasoning"], batch_size=2)
"""


def test_kill_9_mid_run_then_resume_loses_and_duplicates_nothing(tmp_path):
    names = tiny_images(tmp_path / "imgs", 12)
    ann = annotations_file(tmp_path / "ann.jsonl", names)
    script = tmp_path / "run.py"
    script.write_text(KILL_SCRIPT)
    out = tmp_path / "out"
    records = out / RECORDS_FILE
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    args = [sys.executable, str(script), str(tmp_path / "imgs"), str(out), str(ann)]
    proc = subprocess.Popen(args, env=env)
    before = kill_after_lines(proc, records, 6, timeout=90)
    assert 6 <= len(before) < 24, "the run was not interrupted part-way"
    with open(records, "a") as f:
        f.write('{"id": "torn", "image": "img0')  # and as if the kill had torn a line
    done = subprocess.run(args, env=env, timeout=180)
    assert done.returncode == 0
    after = records.read_text().splitlines()
    assert after[: len(before)] == before  # nothing rewritten
    ids = Counter(json.loads(line)["id"] for line in after)
    assert len(ids) == 24 and set(ids.values()) == {1}


# -- command line --------------------------------------------------------------------------------
def mmreact(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mmreact", *args], capture_output=True, text=True, timeout=180,
                          cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT)})


def assert_one_line_error(proc: subprocess.CompletedProcess, fragment: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert "Traceback" not in proc.stderr and len(lines) == 1 and fragment in lines[0], proc.stderr


def test_cli_generate_export_report(tmp_path):
    names = tiny_images(tmp_path / "imgs", 2)
    ann = annotations_file(tmp_path / "ann.jsonl", names)
    script = tmp_path / "replies.json"
    script.write_text(json.dumps(["Question:\nWhat is there?\n===\nAnswer:\nTwo blue cups.",
                                  "Question:\nIs there a dog?\n===\nAnswer:\nYes, a big dog."]))
    out = tmp_path / "out"
    proc = mmreact("datagen", str(tmp_path / "imgs"), "--out", str(out), "--llm", f"scripted:{script}",
                   "--context", str(ann), "--kinds", "conversation", "--export", "llava")
    assert proc.returncode == 0, proc.stderr
    assert "2 images: 2 records written (1 accepted, 1 rejected, 0 errors)" in proc.stdout
    assert "hallucination" in proc.stdout and "wrote 1 conversations" in proc.stdout
    assert json.loads((out / "llava.json").read_text())[0]["image"] == names[0]
    proc = mmreact("datagen", "export", str(out), "--format", "openai", "--image-url", "path")
    assert proc.returncode == 0 and (out / "openai.jsonl").is_file(), proc.stderr
    proc = mmreact("datagen", "report", str(out), "--json")
    assert json.loads(proc.stdout)["rejected_by"] == {"hallucination": 1}
    proc = mmreact("datagen", "refilter", str(out))
    assert proc.returncode == 0 and "hallucination" in proc.stdout
    labels = tmp_path / "labels.jsonl"
    labels.write_text(json.dumps({"image": names[0], "task": "caption", "caption": "A square."}) + "\n")
    proc = mmreact("datagen", "template", str(labels), "--images", str(tmp_path / "imgs"), "--out",
                   str(tmp_path / "tpl"))
    assert proc.returncode == 0 and "wrote 1 template records" in proc.stdout, proc.stderr


def test_cli_user_mistakes_are_one_line(tmp_path):
    names = tiny_images(tmp_path / "imgs", 1)
    ann = annotations_file(tmp_path / "ann.jsonl", names)
    assert_one_line_error(mmreact("datagen", str(tmp_path / "missing"), "--out", str(tmp_path / "o")),
                          "No image folder")
    assert_one_line_error(mmreact("datagen", str(tmp_path / "imgs"), "--kinds", "poems", "--context", str(ann),
                                  "--out", str(tmp_path / "o")), "Unknown kind 'poems'")
    assert_one_line_error(mmreact("datagen", str(tmp_path / "imgs"), "--max-cost", "1", "--context", str(ann),
                                  "--out", str(tmp_path / "o")), "needs --price")
    assert_one_line_error(mmreact("datagen", str(tmp_path / "imgs"), "--price", "cheap", "--context", str(ann),
                                  "--out", str(tmp_path / "o")), "--price takes")
    assert_one_line_error(mmreact("datagen", str(tmp_path / "imgs"), "--engine", "spark", "--context", str(ann),
                                  "--out", str(tmp_path / "o")), "Unknown engine")
    assert_one_line_error(mmreact("datagen", "export", str(tmp_path / "imgs")), "holds no datagen run")
    assert_one_line_error(mmreact("datagen", "template", "--out", str(tmp_path / "t")), "either a labels file")


# -- real experts (tiny random models of the real architectures) ---------------------------------
@pytest.mark.slow
def test_expert_stage_reads_the_real_experts_artifacts(tmp_path):
    """BLIP (caption) and a Florence-2 that emits known regions (dense_caption), both tiny and random,
    through the stage both engines use: the context holds what the experts returned, normalised."""
    import tiny_models
    from fixtures import skimage_path

    from mmreact.datagen.config import DatagenConfig
    from mmreact.datagen.context import normalise_box
    from mmreact.datagen._stages import ImageTask, expert_stage
    from mmreact.experts.caption import CaptionTool
    from mmreact.experts.dense import DenseCaptionTool

    script = "a cat<loc_100><loc_200><loc_700><loc_900>the ear<loc_0><loc_0><loc_999><loc_999>"
    caption = CaptionTool(model=str(tiny_models.build_blip(tmp_path / "blip")), max_new_tokens=8, device="cpu")
    dense = DenseCaptionTool(model=str(tiny_models.build_florence2(tmp_path / "flo", d_model=64, script=script)),
                             max_new_tokens=24, device="cpu")
    path = skimage_path("chelsea.png")
    jobs, records = expert_stage([ImageTask(str(path), "chelsea.png")], [caption, dense],
                                 DatagenConfig(kinds=("detail",)), "fp")
    assert records == [] and len(jobs) == 1
    ctx = jobs[0].context
    said = caption(path).artifact["caption"]
    regions = dense(path).artifact["regions"]
    assert ctx.captions == ((said[0].upper() + said[1:] + ("" if said.endswith(".") else ".")),)
    assert [(o.label, o.box, o.source) for o in ctx.objects] == [
        (r["caption"], normalise_box(r["box"], 451, 300), "dense_caption") for r in regions]
    assert [o.label for o in ctx.objects] == ["a cat", "the ear"] and ctx.objects[1].box[:2] == (0.0, 0.0)
    assert not ctx.detected and ctx.sources == ("caption", "dense_caption")


def test_one_run_per_folder_and_fresh_starts_over(tmp_path):
    names = tiny_images(tmp_path / "imgs", 2)
    ann = annotations_file(tmp_path / "ann.jsonl", names)
    options = dict(llm=planted_llm(), annotations=[ann], kinds=["conversation"])
    generate(tmp_path / "imgs", tmp_path / "out", **options)
    holder = Store.open(tmp_path / "out", Store.existing(tmp_path / "out").run_info()["fingerprint"])
    try:
        with pytest.raises(ConfigError, match="Another mmreact datagen run is writing"):
            generate(tmp_path / "imgs", tmp_path / "out", **options)
    finally:
        holder.close()
    again = generate(tmp_path / "imgs", tmp_path / "out", fresh=True, kinds=["detail"], llm=planted_llm(),
                     annotations=[ann])
    assert again.written == 2 and {r.kind for r in Store.existing(tmp_path / "out").records()} == {"detail"}


def test_ray_engine_refuses_what_it_cannot_send_to_workers(tmp_path):
    pytest.importorskip("ray.data")
    from mmreact.llms import ScriptedLLM

    names = tiny_images(tmp_path / "imgs", 1)
    ann = annotations_file(tmp_path / "ann.jsonl", names)
    with pytest.raises(ConfigError, match="cannot be sent to Ray workers"):  # it holds a lock
        generate(tmp_path / "imgs", tmp_path / "a", llm=ScriptedLLM(["x"]), annotations=[ann], engine="ray")
    with pytest.raises(ConfigError, match="finds experts by name"):  # a tool no worker can look up
        generate(tmp_path / "imgs", tmp_path / "b", llm=planted_llm, tools=[brightness], engine="ray")


def test_template_errors_name_the_file_the_line_and_what_is_wrong(tmp_path):
    names = tiny_images(tmp_path / "imgs", 1)  # 40 x 30
    good = {"image": names[0], "task": "caption", "caption": "A blue square."}
    cases = [({"image": names[0], "task": "count", "label": "cup", "count": "3"},
              'line 2: "count" of a count item must be a whole number, got "3".'),
             ({"image": names[0], "task": "count", "label": "cup", "count": True},
              'line 2: "count" of a count item must be a whole number, got true.'),
             ({"image": names[0], "task": "grounding", "label": "cup", "box": [10, 5, 60, 20]},
              "line 2: The box [10, 5, 60, 20] of a grounding item is not inside the 40x30 image"),
             ({"image": names[0], "task": "region", "box": [30, 5, 10, 20], "caption": "x"},
              "line 2: The box [30, 5, 10, 20] of a region item is not inside the 40x30 image"),
             ({"image": names[0], "task": "region", "box": [1, 2, 3], "caption": "x"},
              'line 2: "box" of a region item must be 4 numbers [x1, y1, x2, y2] in pixels, got [1, 2, 3].')]
    for n, (bad, message) in enumerate(cases):
        labels = tmp_path / f"labels{n}.jsonl"
        labels.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
        proc = mmreact("datagen", "template", str(labels), "--images", str(tmp_path / "imgs"), "--out",
                       str(tmp_path / f"tpl{n}"))
        assert_one_line_error(proc, f"{labels}, {message}")


def test_run_help_shows_the_ray_extra():
    proc = mmreact("datagen", "run", "--help")
    assert proc.returncode == 0 and "mmreact[ray]" in " ".join(proc.stdout.split()), proc.stdout
