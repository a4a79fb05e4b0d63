"""What users of weights on demand rely on (issue 25): behind an HTTPS proxy the reachability probe
tests the proxy (what downloads go through), not the hub; and `mmreact pull --dry-run` lists a file
an interrupted download left short as to download, not as here. Everything on 127.0.0.1: a socket
that stands in for the proxy, the loopback hub of ``fake_hub.py``, and a fake name lookup."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from weights_env import FakeHub, closed_port, go_online

from mmreact.weights import policy
from mmreact.weights.pull import pull_targets, run_pull

PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY",
              "no_proxy")


class Network:
    """Name lookups answer only for 127.0.0.1 (a name of the wide network finds nothing, at once);
    every connection attempt is recorded and goes through."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.lookups: list[str] = []
        self.connections: list[tuple[str, int]] = []
        real_lookup, real_connect = socket.getaddrinfo, socket.create_connection

        def lookup(host, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
            self.lookups.append(str(host))
            if host not in ("127.0.0.1", "localhost"):
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            return real_lookup(host, *args, **kwargs)

        def connect(address, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
            self.connections.append((str(address[0]), int(address[1])))
            return real_connect(address, *args, **kwargs)

        monkeypatch.setattr(socket, "getaddrinfo", lookup)
        monkeypatch.setattr(socket, "create_connection", connect)


@pytest.fixture
def no_proxy_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    go_online(monkeypatch, tmp_path, "https://huggingface.co")  # no offline switch, no probe remembered
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)


def test_behind_an_https_proxy_the_probe_tests_the_proxy(no_proxy_settings, monkeypatch):
    with socket.create_server(("127.0.0.1", 0)) as proxy:
        port = proxy.getsockname()[1]
        monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{port}")
        network = Network(monkeypatch)
        # the hub cannot be looked up from here, but the proxy that fetches it for us answers
        assert policy.reachable("https://huggingface.co/api/models/x")
        assert policy.may_download("https://huggingface.co/x")
    assert network.connections == [("127.0.0.1", port)]
    assert "huggingface.co" not in network.lookups


def test_behind_a_dead_https_proxy_a_reachable_hub_does_not_count(no_proxy_settings, monkeypatch, tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as hub:  # the hub itself would answer ...
        hub_port = hub.getsockname()[1]
        proxy_port = closed_port()  # ... but downloads go through a proxy that is down
        monkeypatch.setenv("HTTPS_PROXY", f"127.0.0.1:{proxy_port}")  # no scheme: http:// is meant
        network = Network(monkeypatch)
        assert not policy.reachable(f"https://127.0.0.1:{hub_port}/api")
    assert network.connections == [("127.0.0.1", proxy_port)]
    # NO_PROXY names the hub: the probe goes to the hub itself
    monkeypatch.setattr(policy, "_probes", {})
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with socket.create_server(("127.0.0.1", 0)) as hub:
        hub_port = hub.getsockname()[1]
        assert policy.reachable(f"https://127.0.0.1:{hub_port}/api")
    assert network.connections[-1] == ("127.0.0.1", hub_port)


def safetensors_bytes(n_floats: int) -> bytes:
    """A whole safetensors file holding one float32 tensor."""
    import json
    import struct

    header = json.dumps({"w": {"dtype": "F32", "shape": [n_floats], "data_offsets": [0, 4 * n_floats]}}).encode()
    return struct.pack("<Q", len(header)) + header + b"\0" * (4 * n_floats)


def test_pull_dry_run_lists_a_short_file_as_to_download(monkeypatch, tmp_path):
    files = {"config.json": b'{"model_type": "blip"}', "model.safetensors": safetensors_bytes(5000),
             "preprocessor_config.json": b"{}", "tokenizer.json": b'{"version": "1.0"}',
             "README.md": b"# card\n"}
    with FakeHub() as hub:
        sha = hub.add_repo("mmreact-test/dry-run", extra=files)
        go_online(monkeypatch, tmp_path, hub.url, MMREACT_CAPTION_MODEL="mmreact-test/dry-run")
        # what an interrupted download left: two whole files, the weights cut short, one file missing
        snapshot = tmp_path / "hf" / "hub" / "models--mmreact-test--dry-run" / "snapshots" / sha
        snapshot.mkdir(parents=True)
        for name in ("config.json", "tokenizer.json"):
            (snapshot / name).write_bytes(files[name])
        (snapshot / "model.safetensors").write_bytes(files["model.safetensors"][:9000])
        lines: list[str] = []
        errors: list[str] = []
        assert run_pull(pull_targets(["caption"]), dry_run=True, out=lines.append, err=errors.append) == 0
    assert errors == []
    listed = {line.split()[0]: line.split("  ")[-1].strip() for line in lines[1:]}
    assert listed == {"config.json": "here", "model.safetensors": "to download",
                      "preprocessor_config.json": "to download", "tokenizer.json": "here"}
    size = len(files["model.safetensors"]) + len(files["preprocessor_config.json"])
    assert lines[0].startswith("caption: BLIP captioning weights 'mmreact-test/dry-run': 2 of 4 files, ")
    assert f"{size / 1000:.0f} kB to download" in lines[0]
    assert [r for r in hub.log if "/resolve/" in r.path and r.method == "GET"] == []  # a dry run fetches nothing
