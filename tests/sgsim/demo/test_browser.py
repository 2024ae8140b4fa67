"""`sgsim demo` in a real headless Chromium: upload, edit, strength slider, a corrupt upload, cancelling, the video tab,
the gallery's layout, one message per failure, the status line, no outside requests."""

from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

WAIT_MS = 60_000  # longest wait for any one page change (the tiny edits take about a second)
STEPS = "4"
LATER_INPUTS = ["automatic", "automatic", 0.0, 0.0, 0.0]  # the edit's inputs after the strength, at the page's defaults
TYPING_TRIES, SETTLE_MS = 5, 300  # set_steps: how often to type the steps, and how long each value must hold


def pixels(page, source: str) -> np.ndarray:
    """The image at an <img>'s source (a file URL of the server), fetched as the browser fetched it."""
    return np.asarray(Image.open(io.BytesIO(page.request.get(source).body())).convert("RGB"))


def wait_for_new_image(page, selector: str, old: str | None) -> str:
    """Wait until the <img> at `selector` shows a source other than `old`; returns the new source."""
    page.wait_for_function(
        "([selector, old]) => { const img = document.querySelector(selector); return img && img.src && img.src !== old; }",
        arg=[selector, old], timeout=WAIT_MS,
    )
    return page.locator(selector).get_attribute("src")


def open_page(browser, url: str):
    """The demo page in a new tab (a new visitor), its steps set to STEPS, recording any request that leaves the
    server (none may: no CDN, no telemetry)."""
    page = browser.new_page(viewport={"width": 1280, "height": 1100})
    page.outside_requests = []
    page.on("request", lambda request: None if request.url.startswith((url, "data:", "blob:"))
            else page.outside_requests.append(request.url))
    page.goto(url)
    # The tab bar is drawn once every tab has mounted; a field typed into before that can be reset to its default.
    page.get_by_role("tab", name="Video").wait_for(timeout=WAIT_MS)
    page.get_by_text("Settings").click()
    set_steps(page, STEPS)
    return page


def set_steps(page, steps: str) -> None:
    """Type the number of steps and leave the field (Tab), as a visitor does, so the page commits it; on a loaded
    machine a page still mounting can put the field back to its default once, so type until the value holds."""
    field = page.locator("#steps input")
    for _ in range(TYPING_TRIES):
        field.fill(steps)
        field.press("Tab")
        page.wait_for_timeout(SETTLE_MS)
        if field.input_value() == steps:
            return
    assert field.input_value() == steps, f"the steps field keeps going back to {field.input_value()}"


@pytest.fixture
def page(demo_server, chromium):
    page = open_page(chromium, demo_server[0])
    yield page
    page.close()


@pytest.fixture
def other_page(demo_server, chromium):
    page = open_page(chromium, demo_server[0])
    yield page
    page.close()


def box(locator) -> tuple[float, float, float, float]:
    """x, y, width and height of an element on the page."""
    found = locator.bounding_box()
    return found["x"], found["y"], found["width"], found["height"]


def messages(page) -> list[str]:
    """The texts of the messages (toasts) open on the page, each message once."""
    return [text.inner_text() for text in page.locator("[data-testid=toast-text]").all()]


def downloaded(page, name: str):
    """A file of the Downloads list as the browser would download it (run.json parsed)."""
    link = page.locator(f'#downloads a[download="{name}"]')
    link.wait_for(timeout=WAIT_MS)
    body = page.request.get(link.get_attribute("href")).body()
    return json.loads(body) if name.endswith(".json") else body


def upload_sound(page, path: Path) -> None:
    """Put a file into the Sound input (clearing the one there first), as a visitor picking a file does."""
    clear = page.locator("#sound button[aria-label='Clear']")
    if clear.count():
        clear.click()
    page.locator("#sound input[type=file]").set_input_files(str(path))


def source_image(generator_file: Path, seed: int) -> np.ndarray:
    """The generator's image of a seed, rendered without the demo: what strength 0 must show."""
    import torch

    from sgsim.editing.sources import seed_latent
    from sgsim.outputs import to_uint8
    from stylegan2 import load_generator

    G = load_generator(generator_file, device=torch.device("cpu")).eval()
    with torch.no_grad():
        return to_uint8(G.synthesis(seed_latent(G, seed)[None], noise_mode="const"))[0]


def test_edit_then_strength_then_a_corrupt_upload_then_edit_again(page, demo_server, shared_data, tiny_generator_file, tmp_path):
    _, workspace = demo_server
    upload_sound(page, shared_data / "audio" / "raining.wav")
    page.locator("#edit").click()
    wait_for_new_image(page, "#result img", None)
    report = downloaded(page, "run.json")  # the downloads come with the final image
    assert report["target"] == {"audio": "raining.wav", "text": None} and report["strength"] == 1.0
    assert report["source"]["seed"] == 1 and report["settings"]["steps"] == int(STEPS)
    edited = page.locator("#result img").get_attribute("src")
    at_one = pixels(page, edited)
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(downloaded(page, "result.png"))).convert("RGB")), at_one)

    page.locator("#strength input[type=range]").fill("0")
    zero = wait_for_new_image(page, "#result img", edited)
    at_zero = pixels(page, zero)
    assert np.abs(at_one.astype(int) - at_zero.astype(int)).mean() > 1.0  # the picture changed
    np.testing.assert_array_equal(at_zero, source_image(tiny_generator_file, 1))  # strength 0 is the seed's own image
    assert downloaded(page, "run.json")["strength"] == 0.0  # the downloads follow the slider

    page.locator("#strength input[type=range]").fill("1")
    back = wait_for_new_image(page, "#result img", zero)
    np.testing.assert_array_equal(pixels(page, back), at_one)  # moving back re-renders the same edit

    corrupt = tmp_path / "broken.wav"
    corrupt.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(20))
    upload_sound(page, corrupt)
    page.get_by_text("broken.wav", exact=False).last.wait_for(timeout=WAIT_MS)
    toast = page.locator(".toast-body").last
    toast.wait_for(timeout=WAIT_MS)
    assert "broken.wav" in toast.inner_text() and str(workspace) not in toast.inner_text()  # the visitor's name, no server path

    upload_sound(page, shared_data / "audio" / "fire.wav")
    page.locator("#edit").click()
    wait_for_new_image(page, "#result img", back)
    page.locator("#gallery img").nth(1).wait_for(timeout=WAIT_MS)  # both edits are in the gallery
    thumbnails = [box(page.locator("#gallery .thumbnail-item").nth(i)) for i in range(2)]
    for x, y, width, height in thumbnails:  # square thumbnails, side by side, far smaller than the page
        assert abs(width - height) <= 1 and width <= 200
    assert thumbnails[0][1] == thumbnails[1][1] and thumbnails[1][0] > thumbnails[0][0]
    assert page.locator("#status").inner_text().startswith("done in")
    if os.environ.get("SGSIM_DEMO_SCREENSHOT"):  # how README's docs/demo.png is made
        page.screenshot(path=os.environ["SGSIM_DEMO_SCREENSHOT"], full_page=True)
    assert page.outside_requests == []


def test_a_downloaded_latent_starts_the_next_edit_where_the_last_one_ended(page, shared_data, tmp_path):
    upload_sound(page, shared_data / "audio" / "drill.wav")
    page.locator("#edit").click()
    downloaded(page, "run.json")
    edited = page.locator("#result img").get_attribute("src")
    latent = tmp_path / "latent.npz"
    latent.write_bytes(downloaded(page, "latent.npz"))
    page.get_by_label("Latent file (.npz)").check()
    page.locator("#latent input[type=file]").set_input_files(str(latent))
    assert not page.locator("#seed").is_visible()
    page.locator("#strength input[type=range]").fill("0")  # the new edit is shown at strength 0: its source
    before = wait_for_new_image(page, "#result img", edited)
    page.locator("#edit").click()
    page.locator("#gallery img").nth(1).wait_for(timeout=WAIT_MS)
    started = wait_for_new_image(page, "#result img", before)
    np.testing.assert_array_equal(pixels(page, started), pixels(page, edited))


def test_a_second_visitor_queues_and_cancel_frees_the_device(page, other_page, demo_server, shared_data):
    _, workspace = demo_server
    runs_before = len(list((workspace / "results").iterdir()))
    upload_sound(page, shared_data / "audio" / "wind.wav")
    set_steps(page, "1000")
    page.locator("#edit").click()
    wait_for_new_image(page, "#result img", None)  # a preview: the optimisation is under way
    upload_sound(other_page, shared_data / "audio" / "fire.wav")
    other_page.locator("#edit").click()
    other_page.locator("#status").get_by_text("waiting for the device").wait_for(timeout=WAIT_MS)
    status = page.locator("#status").inner_text()
    assert re.fullmatch(r"editing: \d+ of 1000 steps · \d+ s elapsed · about \d+ s left", status), status
    page.locator("#cancel").click()
    page.locator("#status").get_by_text("cancelled; no result yet").wait_for(timeout=WAIT_MS)
    assert page.locator("#result img").count() == 0 and page.locator("#downloads a").count() == 0  # no half-finished image
    other_page.locator("#gallery img").first.wait_for(timeout=WAIT_MS)  # the waiting edit got the device
    set_steps(page, STEPS)
    page.locator("#edit").click()
    page.locator("#gallery img").first.wait_for(timeout=WAIT_MS)
    # Had the cancelled run gone on, it would have held the device to its end and left a folder of its own.
    assert len(list((workspace / "results").iterdir())) == runs_before + 2


def test_a_failed_edit_is_one_message_that_keeps_to_its_tab_and_keeps_the_last_result(page, shared_data, tmp_path):
    upload_sound(page, shared_data / "audio" / "raining.wav")
    page.locator("#edit").click()
    downloaded(page, "run.json")
    shown = page.locator("#result img").get_attribute("src")
    before = pixels(page, shown)

    corrupt = tmp_path / "broken.wav"
    corrupt.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(20))
    upload_sound(page, corrupt)
    page.locator("[data-testid=toast-text]").first.wait_for(timeout=WAIT_MS)
    page.locator("#edit").click()  # the same file again: still one message, not "Error (2)"
    page.locator("#status").get_by_text("the edit failed (see the message); the previous result is shown").wait_for(timeout=WAIT_MS)
    page.wait_for_timeout(500)
    [message] = messages(page)
    assert message.count("broken.wav cannot be read") == 1
    assert "(2)" not in page.locator(".toast-body").inner_text()
    # Result and Downloads stay together: the last good edit and its files, no error badge on either.
    np.testing.assert_array_equal(pixels(page, page.locator("#result img").get_attribute("src")), before)
    assert downloaded(page, "run.json")["target"]["audio"] == "raining.wav"
    assert "Error" not in page.locator("#downloads").inner_text() and "Error" not in page.locator("#result").inner_text()

    page.get_by_role("tab", name="Video").click()  # the Edit tab's message does not follow the visitor
    page.wait_for_timeout(500)
    assert messages(page) == []
    page.get_by_role("tab", name="Edit").click()
    upload_sound(page, corrupt)
    page.locator("[data-testid=toast-text]").first.wait_for(timeout=WAIT_MS)
    page.locator("[data-testid=toast-close]").click()  # and the visitor can dismiss it
    page.wait_for_timeout(500)
    assert messages(page) == []


def test_a_request_naming_a_server_file_is_refused_and_the_server_goes_on(demo_server, tmp_path):
    import httpx

    url, workspace = demo_server
    secret = tmp_path / "secret.wav"
    secret.write_bytes(b"not for visitors")
    runs_before = sorted((workspace / "results").iterdir())
    with httpx.Client(base_url=url, timeout=WAIT_MS / 1000) as client:
        sound = {"path": str(secret), "meta": {"_type": "gradio.FileData"}}
        call = client.post("/gradio_api/call/edit", json={"data": [sound, "seed", 1, None, None, "", 2, 2, 1.0, *LATER_INPUTS]})
        answer = client.get(f"/gradio_api/call/edit/{call.json()['event_id']}").text
        assert answer.startswith("event: error") and "not for visitors" not in answer
        assert client.get("/").status_code == 200
    assert sorted((workspace / "results").iterdir()) == runs_before


def api_call(client, data: list) -> str:
    """POST /gradio_api/call/edit with `data` (the page's inputs in order) and return the event stream it answers."""
    body = json.dumps({"data": data})  # Python's json writes NaN as the token a hostile client may send
    call = client.post("/gradio_api/call/edit", content=body, headers={"Content-Type": "application/json"})
    return client.get(f"/gradio_api/call/edit/{call.json()['event_id']}").text


def test_hostile_api_values_are_one_readable_line_and_a_valid_edit_follows(demo_server, shared_data, tmp_path, gif_claiming):
    """Values sent to the API by hand, past the page's widgets: each is refused by sgsim with a readable line (never
    Gradio's "error: null"), nothing is written, and the next valid edit completes."""
    import httpx

    url, workspace = demo_server
    gif, latent = tmp_path / "photo.gif", tmp_path / "latent.npz"
    gif.write_bytes(gif_claiming(65535, 65535))
    np.savez(latent, w=np.zeros((8, 32), np.float32), **{"noise.b4.conv1.noise_const": np.array(["x"] * 16)})
    runs_before = sorted((workspace / "results").iterdir()) if (workspace / "results").exists() else []
    with httpx.Client(base_url=url, timeout=WAIT_MS / 1000) as client:
        def upload(path: Path) -> dict:
            with path.open("rb") as stream:
                stored = client.post("/gradio_api/upload", files={"files": (path.name, stream)}).json()[0]
            return {"path": stored, "meta": {"_type": "gradio.FileData"}}

        sound = upload(shared_data / "audio" / "raining.wav")
        cases = {
            "NaN strength": ([sound, "seed", 1, None, None, "", 2, 2, float("nan"), *LATER_INPUTS],
                             "strength must be a number from 0 to 2, got nan"),
            "text seed": ([sound, "seed", "1", None, None, "", 2, 2, 1.0, *LATER_INPUTS], "the seed must be a whole number"),
            "GIF claiming 65535x65535": ([sound, "photo", 1, upload(gif), None, "", 2, 2, 1.0, *LATER_INPUTS],
                                         "photo.gif claims more pixels than the demo&#x27;s limit"),
            "latent with text noise": ([sound, "latent", 1, None, upload(latent), "", 2, 2, 1.0, *LATER_INPUTS],
                                       "latent.npz: noise buffer b4.conv1.noise_const holds &lt;U1 values, not real numbers"),
        }
        for case, (data, expected) in cases.items():
            answer = api_call(client, data)
            assert answer.startswith("event: error"), (case, answer)
            shown = json.loads(answer.splitlines()[1].removeprefix("data: "))["error"]  # None is Gradio's "error: null"
            assert shown is not None and expected in shown and "\n" not in shown, (case, answer)
        assert (sorted((workspace / "results").iterdir()) if (workspace / "results").exists() else []) == runs_before
        answer = api_call(client, [sound, "seed", 1, None, None, "", 2, 2, 1.0, *LATER_INPUTS])
        assert "event: complete" in answer, answer


def test_the_video_tab_shows_and_offers_an_mp4_of_the_sound(page, shared_data, tmp_path):
    import av
    import soundfile

    waveform, rate = soundfile.read(shared_data / "audio" / "raining.wav", always_2d=True)
    clip = tmp_path / "rain.wav"
    soundfile.write(clip, waveform[: 2 * rate], rate)  # 2 s at the page's default 8 fps: 16 frames
    page.get_by_role("tab", name="Video").click()
    page.locator("#video-sound input[type=file]").set_input_files(str(clip))
    steps = page.locator("#video-steps input")
    steps.fill("2")
    steps.press("Tab")
    page.locator("#make-video").click()
    page.locator("#video video").wait_for(timeout=WAIT_MS)
    page.locator("#video-status").get_by_text("done: the video is ready").wait_for(timeout=WAIT_MS)
    link = page.locator('#video-download a[download="video.mp4"]')
    link.wait_for(timeout=WAIT_MS)
    with av.open(io.BytesIO(page.request.get(link.get_attribute("href")).body())) as container:
        assert sum(1 for _ in container.decode(video=0)) == 16
    assert page.outside_requests == []
