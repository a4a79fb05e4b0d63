"""Ask the web demo about the example receipt in headless Chromium and screenshot the page.

    python tools/screenshot_demo.py [--out docs/demo.png] [--llm default] [--tools ocr]
                                    [--image examples/receipt.png] [--question "..."]

Runs the real agent in-process (by default the embedded SmolLM2 and the OCR expert, both offline),
drives Debian's ``chromium`` through playwright (no browser download: ``executable_path``), uploads
the image, asks, waits for the answer and the annotated picture, opens the first tool call, and
writes the screenshot. Prints the time each stage took.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from servers import free_port  # noqa: E402 - tests/servers.py: stdlib only

FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--hide-scrollbars"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "demo.png")
    parser.add_argument("--llm", default="default")
    parser.add_argument("--tools", default="ocr")
    parser.add_argument("--image", type=Path, default=ROOT / "examples" / "receipt.png")
    parser.add_argument("--question", default="What is the total on this receipt?")
    parser.add_argument("--width", type=int, default=1200)
    parser.add_argument("--height", type=int, default=1550)
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("screenshot_demo: no Chromium found; install it (Debian: apt-get install chromium).")

    from playwright.sync_api import sync_playwright

    from mmreact import Agent
    from mmreact.tools.registry import parse_tool_list
    from mmreact.serve.demo import build_demo, offline_theme

    t0 = time.perf_counter()
    agent = Agent(llm=args.llm, tools=parse_tool_list(args.tools))
    agent.load()
    print(f"agent loaded ({agent.llm.name}; {', '.join(t.name for t in agent.tools)}): {time.perf_counter() - t0:.1f} s")
    demo = build_demo(agent)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, ssr_mode=False,
                theme=offline_theme())
    try:
        with sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
            browser = p.chromium.launch_persistent_context(
                profile, executable_path=chromium, headless=True, args=FLAGS,
                viewport={"width": args.width, "height": args.height})
            page = browser.new_page()
            t1 = time.perf_counter()
            page.goto(f"http://127.0.0.1:{port}/", wait_until="load")
            box = page.get_by_placeholder("Ask about the images...")
            box.wait_for(timeout=120_000)
            print(f"page loaded: {time.perf_counter() - t1:.1f} s")
            page.set_input_files("input[type=file]", str(args.image))
            box.fill(args.question)
            t2 = time.perf_counter()
            page.keyboard.press("Enter")
            page.locator("img[src*='/mmreact-demo-']").first.wait_for(timeout=600_000)
            print(f"answered with the annotated image: {time.perf_counter() - t2:.1f} s")
            calls = page.get_by_text("(image_1)", exact=False)
            if calls.count():
                calls.first.click()  # open the first tool call
            page.wait_for_timeout(800)
            page.evaluate("document.querySelectorAll('.bubble-wrap, [role=log]').forEach(e => e.scrollTop = 0)")
            page.wait_for_timeout(300)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.out))
            browser.close()
    finally:
        demo.close()
    print(f"wrote {args.out} in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
