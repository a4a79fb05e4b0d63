"""``mmreact datagen --engine ray``: Ray Data on a local 2-CPU cluster bound to 127.0.0.1 makes the
same records as the local engine (real OCR, the planted scripted LLM), a corrupt image becomes an
error record, and a rerun adds nothing twice.

Ray runs in a subprocess: ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (every Ray process on the
loopback address) must be set before Ray is imported, and the cluster must not outlive the test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from datagen_helpers import annotations_file, image_folder, tiny_images
from kill9 import kill_after_lines

from mmreact.datagen import export
from mmreact.datagen._store import RECORDS_FILE, Store

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("ray.data")

SCRIPT = textwrap.dedent("""
    import json, os, sys
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    import ray
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200 * 1024 * 1024, log_to_driver=False)
    nodes = [n["NodeManagerAddress"] for n in ray.nodes()]
    gcs = ray.get_runtime_context().gcs_address
    from datagen_helpers import planted_llm
    from mmreact.datagen import generate

    images, local, remote = sys.argv[1:4]
    options = dict(tools=["ocr"], cleanup=True)
    generate(images, local, llm=planted_llm(), **options)
    ray_options = {"expert_workers": 1, "llm_workers": 2}
    runs = [generate(images, remote, llm=planted_llm, engine="ray", ray=ray_options, limit=limit, **options)
            for limit in (2, None, None)]  # two images, then the rest, then nothing left
    # a budget: the LLM actors stop starting calls past it; a rerun without one finishes the rest
    from pathlib import Path
    from datagen_helpers import CountingLLM, annotations_file, tiny_images
    tiny = Path(remote).parent / "tiny"
    ann = annotations_file(tiny.parent / "ann.jsonl", tiny_images(tiny, 6))
    costly = dict(llm=CountingLLM, annotations=[ann], kinds=["conversation"], engine="ray", price="1,2", batch_size=2)
    budget = [generate(tiny, tiny.parent / "budget", max_cost=0.003, **costly),
              generate(tiny, tiny.parent / "budget", **costly)]
    print(json.dumps({"nodes": nodes, "gcs": gcs, "written": [r.written for r in runs],
                      "skipped": [r.skipped_images for r in runs], "accepted": [r.accepted for r in runs],
                      "extra": runs[0].extra, "budget": [[r.stopped, r.written, r.cost] for r in budget]}))
    ray.shutdown()
""")


def comparable(record):
    return record.with_(llm={k: v for k, v in record.llm.items() if k != "seconds"})


@pytest.mark.slow
def test_ray_engine_makes_the_local_engines_records_exactly_once(tmp_path):
    images = image_folder(tmp_path)  # receipt, sign, a copy of the receipt, a corrupt file
    local, remote = tmp_path / "local", tmp_path / "ray"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests"),
                                                        os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(images), str(local), str(remote)], env=env,
                          capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["nodes"] == ["127.0.0.1"] and out["gcs"].startswith("127.0.0.1:")
    # broken.png and receipt.png first (3 records each), then sign.png and the copy; then nothing
    assert out["written"] == [6, 6, 0] and out["skipped"] == [0, 2, 4]
    assert out["extra"]["llm_workers"] == 2
    (stopped, written, cost), (again, rest, _) = out["budget"]
    assert stopped == "budget" and 3 <= written < 6 and cost >= 0.003  # calls in flight may pass the line
    assert again is None and written + rest == 6

    # written by the driver as each record arrived, into the store the local engine writes
    assert (remote / RECORDS_FILE).is_file() and not (remote / "shards").exists()
    mine = {(r.id, r.image): r for r in Store.existing(local).records()}
    theirs = {(r.id, r.image): r for r in Store.existing(remote).records()}
    assert set(mine) == set(theirs) and len(theirs) == 12
    for key, r in mine.items():  # the copy of the receipt came in the second run: seen, not sent to the LLM
        assert comparable(theirs[key]) == comparable(r), key
    errors = [r for r in theirs.values() if r.status == "error"]
    assert {r.image for r in errors} == {"broken.png"} and len(errors) == 3
    assert all("not an image" in r.error for r in errors)

    for fmt in ("llava", "sharegpt"):
        a = export(local, fmt, tmp_path / f"local-{fmt}.json")
        b = export(remote, fmt, tmp_path / f"ray-{fmt}.json")
        assert a.written == b.written == 5
        assert json.loads((tmp_path / f"local-{fmt}.json").read_text()) == \
            json.loads((tmp_path / f"ray-{fmt}.json").read_text())


KILL_SCRIPT = textwrap.dedent("""
    import os, sys, time
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    import ray
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200 * 1024 * 1024, log_to_driver=False)
    from mmreact.datagen import generate
    from mmreact.llms import ScriptedLLM

    def slow(request):
        time.sleep(0.3)
        return "Question:\\nWhat is on the table?\\n===\\nAnswer:\\nTwo blue cups."

    def make():
        return ScriptedLLM([slow], repeat_last=True, name="scripted:slow")

    summary = generate(sys.argv[1], sys.argv[2], llm=make, annotations=[sys.argv[3]], kinds=["conversation"],
                       engine="ray", batch_size=4, ray={"expert_workers": 1, "llm_workers": 1})
    print(summary.line())
    ray.shutdown()
""")


@pytest.mark.slow
def test_ray_engine_writes_records_as_they_finish_and_resumes_after_kill_9(tmp_path):
    """The issue: a Ray run wrote nothing until its end, so a kill -9 lost all its LLM work. Now
    each record reaches the store as it is made; a rerun makes only the rest, nothing twice."""
    names = tiny_images(tmp_path / "imgs", 12)
    ann = annotations_file(tmp_path / "ann.jsonl", names)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests"),
                                                        os.environ.get("PYTHONPATH", "")])}
    args = [sys.executable, "-c", KILL_SCRIPT, str(tmp_path / "imgs"), str(out), str(ann)]
    proc = subprocess.Popen(args, env=env, start_new_session=True)
    try:
        before = kill_after_lines(proc, out / RECORDS_FILE, 3, timeout=240)
    finally:
        _end_session(proc.pid)
    assert 3 <= len(before) < 12, "the run was not interrupted part-way"
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=280, start_new_session=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"({len(before)} already done)" in done.stdout
    after = (out / RECORDS_FILE).read_text().splitlines()
    assert after[: len(before)] == before  # nothing rewritten
    ids = [json.loads(line)["id"] for line in after]
    assert len(ids) == 12 and len(set(ids)) == 12


def _end_session(pid: int) -> None:
    """Kill what is left of the killed driver's session (its Ray processes), by its process group."""
    import signal

    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
