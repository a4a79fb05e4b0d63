"""mmreact.findings: the one reader of expert artifacts (boxes, grounding and datagen all use it)."""

from __future__ import annotations

from mmreact import Observation
from mmreact.findings import Finding, Findings
from mmreact.trace import CallRecord

ART = {
    "lines": [{"text": " TOTAL  7.75 ", "box": [1, 2, 30, 12], "confidence": 0.9}, {"text": "", "box": [0, 0, 1, 1]},
              "not a dict"],
    "caption": "a receipt on a table",
    "regions": [{"caption": "a paper receipt", "box": [0, 0, 50, 80]}],
    "objects": [{"label": "cup", "confidence": 0.8, "box": [5, 5, 9, 9]},
                {"label": "cup", "confidence": 0.4, "box": ["x", 0, 1, 1]}],
    "tags": [{"tag": "paper", "score": 0.3}],
    "faces": [{"name": "Ada", "box": [1, 1, 4, 4]}],
    "share": 0.5,
}


def test_every_key_the_experts_write_is_read_into_one_typed_record() -> None:
    found = Findings.from_artifact(ART)
    assert list(found) == [
        Finding("text", "TOTAL 7.75", (1.0, 2.0, 30.0, 12.0), 0.9, 0),
        Finding("caption", "a receipt on a table"),
        Finding("region", "a paper receipt", (0.0, 0.0, 50.0, 80.0), None, 0),
        Finding("object", "cup", (5.0, 5.0, 9.0, 9.0), 0.8, 0),
        Finding("object", "cup", None, 0.4, 1),   # a malformed box is dropped, the finding kept
        Finding("tag", "paper", None, 0.3, 0),
        Finding("other", "Ada", (1.0, 1.0, 4.0, 4.0), None, 0),
    ]
    assert found.ran == {"text", "caption", "region", "object", "tag", "other"}
    assert found.counts() == {"cup": 2}
    assert [f.text for f in found.boxed] == ["TOTAL 7.75", "a paper receipt", "cup", "Ada"]
    assert [f.kind for f in found.of("object", "tag")] == ["object", "object", "tag"]


def test_a_detector_that_found_nothing_still_ran() -> None:
    found = Findings.from_artifact({"objects": []})
    assert len(found) == 0 and found.ran == {"object"}
    assert Findings.from_artifact(None) == Findings() and Findings.from_artifact([1, 2]) == Findings()


def test_calls_and_observations_give_their_findings_and_failures_none() -> None:
    ok = CallRecord(tool="ocr", call="ocr(image_1)", args={}, text="...", artifact={"lines": [{"text": "A"}]})
    bad = ok.model_copy(update={"error": True})
    assert [f.text for f in ok.findings] == ["A"] and len(bad.findings) == 0
    assert [f.text for f in Observation(text="t", artifact={"caption": "x"}).findings] == ["x"]
    assert len(Observation.failure("no").findings) == 0
