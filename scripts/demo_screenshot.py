"""README's docs/demo.png: a real edit on the demo page, `python scripts/demo_screenshot.py [--out docs/demo.png]`.

Serves `sgsim demo --world shapes` on a free local port, drives the system Chromium (playwright) as a visitor does:
pick a spoken word from the example sounds, choose a seed, press Edit, wait for the finished edit, take the picture.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import tempfile
from pathlib import Path

WAIT_MS = 300_000


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "demo.png")
    parser.add_argument("--word", default="red", help="the example sound to edit toward")
    parser.add_argument("--seed", default="10001")
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    from sgsim.cli.demo import start_demo
    from sgsim.settings import EditSettings
    from sgsim.worlds import resolve_world, world_networks

    files = resolve_world("shapes")
    settings = world_networks(EditSettings(world="shapes"), files)
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="sgsim-demo-shot-") as workspace:
        server = start_demo(settings.generator, settings.encoder, settings.encoder_checkpoint, settings.clip_weights, "cpu",
                            "127.0.0.1", port, files.audio, Path(workspace), block=False, world="shapes")
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
                page = browser.new_page(viewport={"width": 1280, "height": 1000})
                page.goto(f"http://127.0.0.1:{port}")
                page.get_by_role("tab", name="Video").wait_for(timeout=WAIT_MS)
                page.get_by_text(f"{args.word}.flac", exact=False).first.click()
                page.locator("#seed input").fill(args.seed)
                page.locator("#seed input").press("Tab")
                page.locator("#edit").click()
                page.wait_for_function("document.querySelector('#status') && document.querySelector('#status').innerText.startsWith('done in')",
                                       timeout=WAIT_MS)
                page.wait_for_timeout(1000)
                page.screenshot(path=str(args.out), full_page=True)
                browser.close()
        finally:
            server.close()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
