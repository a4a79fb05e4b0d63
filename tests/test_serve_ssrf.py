"""Remote image URLs: the SSRF guard. The resolver is injected; a real TLS server on 127.0.0.1 (with a
test certificate authority) counts connections, so "refused before any connection" is checked."""

from __future__ import annotations

import contextlib
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import openai
import pytest

pytest.importorskip("fastapi")
trustme = pytest.importorskip("trustme")

from mmreact import Agent, ScriptedLLM  # noqa: E402
from mmreact.errors import ImageError  # noqa: E402
from mmreact.serve import ServeConfig, create_app  # noqa: E402
from mmreact.serve._image_urls import ImageFetcher, address_problem, decode_data_url  # noqa: E402
from serve_helpers import hash_planner, image_array, make_hash_tool, png_bytes, running, sha  # noqa: E402

HOST = "img.test"


class ImageServer:
    """An https server on 127.0.0.1 whose paths answer as the test says; it counts connections."""

    def __init__(self, ca: trustme.CA) -> None:
        self.connections = 0
        self.requests: list[str] = []
        self.routes: dict[str, tuple[int, dict[str, str], object]] = {}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def setup(self) -> None:
                outer.connections += 1
                super().setup()

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                outer.requests.append(self.path)
                status, headers, body = outer.routes.get(self.path, (404, {}, b""))
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                if isinstance(body, bytes):
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                self.end_headers()
                with contextlib.suppress(OSError):
                    for piece in body():  # type: ignore[operator]
                        self.wfile.write(piece)
                        self.wfile.flush()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(HOST).configure_cert(ctx)
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def url(self, path: str) -> str:
        return f"https://{HOST}:{self.port}{path}"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def image_server(ca) -> Iterator[ImageServer]:
    server = ImageServer(ca)
    server.thread.start()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


def client_ctx(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


def loopback_is_public(address: str) -> str | None:
    """The test's stand-in for a public address: 127.0.0.1 (the test server); the rest as usual."""
    return None if address == "127.0.0.1" else address_problem(address)


def fetcher(ca, addresses, calls=None, **kw) -> ImageFetcher:
    def resolve(host: str, port: int) -> list[str]:
        if calls is not None:
            calls.append(host)
        return list(addresses(len(calls or [])) if callable(addresses) else addresses)

    return ImageFetcher(resolver=resolve, ssl_context=client_ctx(ca), **kw)


BAD_ADDRESSES = ["127.0.0.1", "127.8.9.10", "::1", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254",
                 "169.254.10.10", "fe80::1", "fd00:ec2::254", "fc00::5", "100.64.0.1", "100.100.100.200", "0.0.0.0",
                 "224.0.0.1", "255.255.255.255", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:8.8.8.8",
                 "2002:7f00:1::1", "64:ff9b::a00:1", "192.0.0.192", "240.0.0.1", "::"]


@pytest.mark.parametrize("address", BAD_ADDRESSES)
def test_non_public_addresses_are_refused_before_any_connection(ca, image_server, address):
    image_server.routes["/a.png"] = (200, {}, png_bytes(image_array(1)))
    with pytest.raises(ImageError, match="refused: its host resolves to"):
        fetcher(ca, [address]).fetch(image_server.url("/a.png"), "messages[0].content[0]")
    assert image_server.connections == 0


def test_one_private_address_among_public_ones_is_refused(ca, image_server):
    with pytest.raises(ImageError, match="a private address"):
        fetcher(ca, ["8.8.8.8", "10.1.2.3"]).fetch(image_server.url("/a.png"), "x")
    assert image_server.connections == 0


@pytest.mark.parametrize("url, needle", [
    ("http://img.test/a.png", "must use https"), ("ftp://img.test/a.png", "must use https"),
    ("https://user:pw@img.test/a.png", "user name or password"), ("https:///a.png", "no host"),
    ("https://img.test:99999/a.png", "malformed"), ("file:///etc/passwd", "must use https"),
])
def test_bad_urls_are_refused_before_resolving(ca, url, needle):
    calls: list[str] = []
    with pytest.raises(ImageError, match=needle):
        fetcher(ca, ["8.8.8.8"], calls).fetch(url, "x")
    assert calls == []


def test_ip_literals_go_through_the_same_check(ca, image_server):
    plain = ImageFetcher(ssl_context=client_ctx(ca))  # the system resolver: IP literals need no lookup
    for url in (f"https://127.0.0.1:{image_server.port}/a.png", f"https://[::1]:{image_server.port}/a.png",
                f"https://[::ffff:127.0.0.1]:{image_server.port}/a.png", "https://169.254.169.254/latest/meta-data/"):
        with pytest.raises(ImageError, match="refused"):
            plain.fetch(url, "x")
    assert image_server.connections == 0


def test_dns_rebinding_cannot_swap_the_checked_address(ca, image_server):
    img = image_array(2)
    image_server.routes["/a.png"] = (200, {}, png_bytes(img))
    calls: list[str] = []
    # first answer: the (test-)public server; any later lookup would say 10.0.0.1
    f = fetcher(ca, lambda n: ["127.0.0.1"] if n <= 1 else ["10.0.0.1"], calls, address_problem=loopback_is_public)
    assert f.fetch(image_server.url("/a.png"), "x") == png_bytes(img)
    assert calls == [HOST]  # resolved once; the connection went to the checked address


def test_redirects_are_not_followed(ca, image_server):
    image_server.routes["/r.png"] = (302, {"Location": "https://10.0.0.1/secret"}, b"")
    calls: list[str] = []
    with pytest.raises(ImageError, match="redirects are not followed"):
        fetcher(ca, ["127.0.0.1"], calls, address_problem=loopback_is_public).fetch(image_server.url("/r.png"), "x")
    assert calls == [HOST] and image_server.requests == ["/r.png"]


def test_size_limit_on_declared_length_and_while_streaming(ca, image_server):
    image_server.routes["/big.png"] = (200, {}, b"\x89PNG" + b"0" * 5000)
    image_server.routes["/endless.png"] = (200, {}, lambda: (b"0" * 1000 for _ in range(10_000)))
    f = fetcher(ca, ["127.0.0.1"], address_problem=loopback_is_public, max_bytes=2000)
    with pytest.raises(ImageError, match="download limit"):
        f.fetch(image_server.url("/big.png"), "x")
    t0 = time.monotonic()
    with pytest.raises(ImageError, match="download limit"):
        f.fetch(image_server.url("/endless.png"), "x")
    assert time.monotonic() - t0 < 5


def test_time_limit_while_streaming(ca, image_server):
    def trickle():
        for _ in range(50):
            time.sleep(0.1)
            yield b"0"

    image_server.routes["/slow.png"] = (200, {}, trickle)
    f = fetcher(ca, ["127.0.0.1"], address_problem=loopback_is_public, timeout=0.5)
    t0 = time.monotonic()
    with pytest.raises(ImageError, match="took longer than 0.5 s"):
        f.fetch(image_server.url("/slow.png"), "x")
    assert time.monotonic() - t0 < 2


def test_wrong_certificate_is_refused(image_server):
    other = trustme.CA()  # the client trusts a different authority
    f = ImageFetcher(resolver=lambda h, p: ["127.0.0.1"], address_problem=loopback_is_public,
                     ssl_context=client_ctx(other))
    with pytest.raises(ImageError, match="failed|could not be reached"):
        f.fetch(image_server.url("/a.png"), "x")


def test_data_url_decoding_is_strict():
    ok = decode_data_url("data:image/png;base64,aGVsbG8=", "p", 100)
    assert ok == (b"hello", "image/png")
    for bad in ("data:image/png;base64,aGVsbG8", "data:image/png;base64,aGVs bG8=", "data:image/png,aGVsbG8=",
                "data:image/png;base64,", "data:;base64,aGVsbG8=", "data:image/png;base64,aGVsbG8=\n"):
        with pytest.raises(ImageError) as info:
            decode_data_url(bad, "messages[0].content[0]", 100)
        assert "aGVs" not in str(info.value)
    with pytest.raises(ImageError, match="over the"):
        decode_data_url("data:image/png;base64," + "A" * 400, "p", 100)


def test_through_the_server_remote_urls(ca, image_server):
    img = image_array(3)
    image_server.routes["/a.png"] = (200, {"Content-Type": "image/png"}, png_bytes(img))
    agent = Agent(ScriptedLLM([hash_planner], repeat_last=True), tools=[make_hash_tool()])
    good = fetcher(ca, ["127.0.0.1"], address_problem=loopback_is_public)
    message = [{"role": "user", "content": [{"type": "text", "text": "hash?"},
                                            {"type": "image_url", "image_url": {"url": image_server.url("/a.png")}}]}]
    with running(create_app(agent, ServeConfig(allow_image_urls=True), fetcher=good)) as base:
        c = openai.OpenAI(base_url=f"{base}/v1", api_key="x", max_retries=0)
        assert c.chat.completions.create(model="mmreact", messages=message).choices[0].message.content == sha(img)
    evil = fetcher(ca, ["169.254.169.254"])
    with running(create_app(agent, ServeConfig(allow_image_urls=True), fetcher=evil)) as base:
        c = openai.OpenAI(base_url=f"{base}/v1", api_key="x", max_retries=0)
        with pytest.raises(openai.BadRequestError, match="cloud metadata"):
            c.chat.completions.create(model="mmreact", messages=message)
    assert image_server.connections == 1
