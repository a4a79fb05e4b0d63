"""What users of `mmreact datagen` rely on (issue 25): an accepted record is never undone by a later
error line for it (a retry that failed, a Ray task that ran twice), and the openai export's first
text part is exactly the question. Real runs over tiny images with user annotations (no expert
runs) and a scripted LLM."""

from __future__ import annotations

import json
from pathlib import Path

from datagen_helpers import annotations_file, tiny_images

from mmreact.datagen import export, generate
from mmreact.datagen._store import RECORDS_FILE, SHARDS_DIR, Store
from mmreact.llms import ScriptedLLM

TWO_PAIRS = ("Question:\nHow many cups are on the table?\n===\nAnswer:\nThere are two cups.\n===\n"
             "Question:\nWhat colour are the cups?\n===\nAnswer:\nThe cups are blue.")
QUESTIONS = ["How many cups are on the table?", "What colour are the cups?"]


def make_run(tmp: Path, n: int = 2) -> tuple[Path, Path, ScriptedLLM]:
    names = tiny_images(tmp / "imgs", n)
    ann = annotations_file(tmp / "ann.jsonl", names)
    llm = ScriptedLLM([TWO_PAIRS], repeat_last=True)
    summary = generate(tmp / "imgs", tmp / "out", llm=llm, annotations=[ann], kinds=["conversation"])
    assert summary.accepted == n and summary.errors == 0
    return tmp / "imgs", tmp / "out", llm


def test_a_later_error_line_never_replaces_an_accepted_record(tmp_path):
    images, out, _ = make_run(tmp_path)
    first = Store.existing(out).records()
    assert [r.status for r in first] == ["accepted", "accepted"]
    failed = [r.with_(status="error", error="The LLM failed: connection reset.", pairs=(), kept=(), raw=None)
              for r in first]
    # the same records failing later: one in records.jsonl (a retry), one in a shard (a Ray task run twice)
    with open(out / RECORDS_FILE, "a", encoding="utf-8") as f:
        f.write(failed[0].to_json() + "\n")
    (out / SHARDS_DIR).mkdir()
    (out / SHARDS_DIR / "task-7.jsonl").write_text(failed[1].to_json() + "\n", encoding="utf-8")

    store = Store.existing(out)
    assert [(r.id, r.status, r.pairs) for r in store.records()] == [(r.id, "accepted", r.pairs) for r in first]
    assert export(out, "llava", tmp_path / "llava.json").written == 2
    # a rerun that retries errors finds nothing to do: there is no error left for these records
    llm = ScriptedLLM([TWO_PAIRS], repeat_last=True)
    again = generate(images, out, llm=llm, annotations=[tmp_path / "ann.jsonl"], kinds=["conversation"],
                     retry_errors=True)
    assert llm.requests == [] and again.written == 0


def test_a_later_success_replaces_an_earlier_error(tmp_path):
    _, out, _ = make_run(tmp_path, n=1)
    (accepted,) = Store.existing(out).records()
    lines = (out / RECORDS_FILE).read_text(encoding="utf-8")
    failed = accepted.with_(status="error", error="The LLM failed.", pairs=(), kept=(), raw=None)
    (out / RECORDS_FILE).write_text(failed.to_json() + "\n" + lines, encoding="utf-8")
    assert [r.status for r in Store.existing(out).records()] == ["accepted"]


def test_the_openai_export_starts_each_turn_with_exactly_its_question(tmp_path):
    images, out, _ = make_run(tmp_path)
    for image_url in ("base64", "path"):
        summary = export(out, "openai", tmp_path / f"openai-{image_url}.jsonl", image_url=image_url)
        rows = [json.loads(line) for line in Path(summary.path).read_text(encoding="utf-8").splitlines()]
        assert len(rows) == summary.written == 2
        for row in rows:
            first, answer, second, _ = row["messages"]
            assert first["role"] == "user"
            assert first["content"][0] == {"type": "text", "text": QUESTIONS[0]}
            assert first["content"][1]["type"] == "image_url"
            assert answer["content"] == [{"type": "text", "text": "There are two cups."}]
            assert second["content"] == [{"type": "text", "text": QUESTIONS[1]}]
        if image_url == "path":
            assert sorted(r["messages"][0]["content"][1]["image_url"]["url"] for r in rows) == \
                sorted(p.name for p in images.iterdir())
