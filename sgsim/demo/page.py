"""The demo's web page (Gradio Blocks) and the server that hosts it.

Gradio serves its whole frontend from its wheel (no CDN), queues events (an edit and a re-render share one slot per
device, and the page shows a visitor's place in the queue) and keeps every upload in its upload folder, which is the
only place a request may name a file from (sgsim.demo.uploads checks it again before anything is opened).
"""

from __future__ import annotations

import html
import queue
import random
import threading
import time
from pathlib import Path
from typing import Callable, Iterator, Optional

import gradio as gr
import numpy as np
from gradio.utils import get_upload_folder

from sgsim.demo.engine import DemoEngine, EditedRun, EditRequest, VideoRequest
from sgsim.demo.uploads import (MB, UploadLimits, check_image, check_keyframes, check_latent, check_sound, public_message,
                                uploaded_file)
from sgsim.errors import user_errors
from sgsim.camera import Camera
from sgsim.settings import INVERSION_METHODS, ROTATE_HELP, SEED_MAX, SETTINGS, TRANSLATE_HELP, bounds_of, default_of

DEVICE_QUEUE = "device"  # concurrency group of everything that uses the generator: one at a time
RESULT_HEIGHT = 384  # pixels of the result on the page (the image keeps its shape)
GALLERY_SIZE = 12  # most recent results kept in a visitor's gallery
SOURCES = {"seed": "Seed", "photo": "Photo (inverted first)", "latent": "Latent file (.npz)"}
AUTOMATIC = "automatic"  # of the inversion method and the photo encoder: the photo policy's choice (sgsim.photo_inversion)
TRANSLATE_RANGE = (-1.0, 1.0)  # image widths of the translate sliders (StyleGAN3 generators): a whole width either way
ROTATE_RANGE = (-180.0, 180.0)  # degrees of its rotate slider: one turn
STRENGTH_RANGE = (0.0, 2.0)  # of the slider; 0 is the source, 1 the optimised edit, beyond exaggerates
DEFAULT_STEPS = default_of("steps")  # as `sgsim edit`
MIN_STEPS, MIN_INVERT_STEPS = bounds_of("steps")[0], bounds_of("invert_steps")[0]
DEFAULT_INVERT_STEPS = 300  # fewer than `sgsim edit`'s 1000: a visitor waits for them
DEFAULT_VIDEO_STEPS = 50  # fewer than `sgsim video`'s 100: a visitor waits for them
DEFAULT_VIDEO_FPS = 8
KEYFRAME_RANGE = (0.5, 5.0)  # seconds between keyframes; with the keyframe limit this bounds the optimised batch
VIDEO_STAGES = {"embed": ("hearing the sound", "windows"), "optimise": ("optimising keyframes", "steps"),
                "render": ("rendering frames", "frames")}  # sgsim.editing.video's stage -> what the page says, unit
THUMBNAIL_PX = 128  # side of a square thumbnail in the Results gallery
PAGE_CSS = (
    "#result img { width: 100%; height: 100%; object-fit: contain; }"  # small generators' images fill the box
    # Square thumbnails in a grid, however many results there are (Gradio stretches a lone one to the full width).
    f"#gallery .grid-container {{ grid-template-columns: repeat(auto-fill, {THUMBNAIL_PX}px) !important;"
    f" grid-template-rows: none !important; grid-auto-rows: {THUMBNAIL_PX}px !important; }}"
    f"#gallery .thumbnail-item {{ width: {THUMBNAIL_PX}px; height: {THUMBNAIL_PX}px; aspect-ratio: 1 / 1; }}"
    "#gallery .thumbnail-item img { object-fit: contain; }"
    "#gallery .grid-wrap { padding-top: 2.5em; }"  # below the gallery's label, not under it
)
# Closes the page's messages: before a new event's own message, and when the visitor turns to another tab.
CLOSE_MESSAGES_JS = "(...values) => { document.querySelectorAll('.toast-close').forEach(b => b.click()); return values; }"
TITLE = "sgsim: sound-guided image editing"
INTRO = ("Upload or record a sound (or pick an example), choose where the edit starts, and press **Edit**: "
         "a StyleGAN2 latent is optimised until CLIP sees the sound in the image. "
         "The strength slider re-renders the result along the edit without optimising again. "
         "The **Video** tab makes a clip whose picture follows the sound over time, with the sound as its track.")


def _shown_error(message: str) -> gr.Error:
    """A page error showing `message` as text (it may hold a visitor's file name, never markup)."""
    return gr.Error(html.escape(message), duration=None, print_exception=False)


def _number(what: str, value, least: float, most: float, whole: bool = True):
    """A number field's raw value in [least, most] (an int when `whole`), or a page error saying what it must be.
    NaN fails every comparison, so it is refused here as any other value outside the range."""
    try:
        if (isinstance(value, (int, float)) and not isinstance(value, bool) and (not whole or float(value).is_integer())
                and least <= value <= most):
            return int(value) if whole else float(value)
    except (TypeError, ValueError, OverflowError):
        pass
    shown = str if whole else "{:g}".format
    kind = "a whole number" if whole else "a number"
    raise _shown_error(f"{what} must be {kind} from {shown(least)} to {shown(most)}, got {value!r:.40}")


def _choice(what: str, value, choices) -> str:
    """A choice field's raw value if it is one of `choices`, or a page error listing them."""
    if isinstance(value, str) and value in choices:
        return value
    raise _shown_error(f"unknown {what} {value!r:.40}; choose one of {', '.join(choices)}")


def _help(name: str) -> str:
    """The help line of the edit setting `name`, as `sgsim edit --help` shows it."""
    return SETTINGS[name].metadata["help"]


def _inversion_note(run: EditedRun) -> str:
    """For an edit of a photo: how it was inverted and how far the reconstruction is from the photo, as `sgsim edit`
    prints it; empty for other sources."""
    from sgsim.photo_inversion import describe_distances

    inversion = run.record.get("source", {}).get("inversion")
    if not inversion:
        return ""
    return (f" · inversion: {inversion['method']}, reconstruction distance to the photo: "
            f"{describe_distances(inversion['reconstruction'])}")


def _text(value, limit: int) -> Optional[str]:
    """The optional text field's raw value, stripped (None when empty), or a page error when it is not short text."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise _shown_error(f"the text must be at most {limit} characters of text")
    return value.strip() or None


def photo_encoder_names() -> list[str]:
    """The published photo encoders (manifest names): a visitor picks one by name; it is read from the cache."""
    from checkpoints import entries

    return [item.name for item in entries() if item.kind == "photo-encoder"]


EXAMPLE_SUFFIXES = (".wav", ".flac")  # the example sounds a folder offers the page


class ProgressClock:
    """The status line of a running job: steps done, time elapsed and the time left at the rate so far (Gradio's own
    timer restarts at every preview, so the page keeps its own)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.started = clock()

    def line(self, what: str, done: int, total: int, unit: str = "steps") -> str:
        elapsed = self.clock() - self.started
        left = f" · about {elapsed / done * (total - done):.0f} s left" if 0 < done < total else ""
        return f"{what}: {done} of {total} {unit} · {elapsed:.0f} s elapsed{left}"


class DemoPage:
    """The page's event handlers over one DemoEngine; every file a handler opens comes from `uploads`."""

    def __init__(self, engine: DemoEngine, limits: UploadLimits = UploadLimits(), examples: Optional[Path] = None):
        self.engine = engine
        self.uploads = Path(get_upload_folder()).resolve()  # Gradio's, named by GRADIO_TEMP_DIR when the page is made
        self.limits = limits
        self._cancels: dict[str, threading.Event] = {}  # session -> the flag that stops its running edit
        self.examples = sorted(p for p in Path(examples).iterdir() if p.suffix.lower() in EXAMPLE_SUFFIXES) if examples is not None else []
        self.photo_encoders = (AUTOMATIC, *photo_encoder_names())  # what a visitor may pick: never a server path

    def _upload(self, value, kind: str) -> tuple[Path, str]:
        """A checked upload (path inside the upload folder) and the name its sender gave it, or a page error."""
        if value is None:
            raise _shown_error(f"no {kind} given; upload one first")
        path = value if isinstance(value, str) else value.get("path") if isinstance(value, dict) else getattr(value, "path", None)
        if not isinstance(path, str):
            raise _shown_error(f"the {kind} is not an uploaded file; upload it again")
        name, checked = Path(path).name, None
        try:
            checked = uploaded_file(path, self.uploads)
            {"sound": check_sound, "photo": check_image, "latent file": check_latent}[kind](checked, self.limits, name)
        except user_errors() as exc:  # a path that resolves to no file (a NUL byte) is named as it came
            raise _shown_error(public_message(exc, checked or Path(path), name)) from None
        return checked, name

    def check_sound(self, sound: Optional[str]) -> None:
        """On upload or recording: say at once what is wrong with a sound."""
        if sound is not None:
            self._upload(sound, "sound")

    def request(self, sound, source_kind, seed, photo, latent, text, steps, invert_steps, inversion_method=AUTOMATIC,
                photo_encoder=AUTOMATIC, translate_x=0.0, translate_y=0.0, rotate=0.0) -> EditRequest:
        """The visitor's inputs as an EditRequest, every file checked, every number within the limits, every choice
        one the page offers (AUTOMATIC leaves it to the photo policy)."""
        sound_path, sound_name = self._upload(sound, "sound")
        source_kind = _choice("source", source_kind, SOURCES)
        if source_kind == "seed":
            source, source_name = _number("the seed", seed, 0, SEED_MAX), None
        else:
            source, source_name = self._upload(photo if source_kind == "photo" else latent,
                                               "photo" if source_kind == "photo" else "latent file")
        method = _choice("inversion method", inversion_method, (AUTOMATIC, *INVERSION_METHODS))
        encoder = _choice("photo encoder", photo_encoder, self.photo_encoders)
        return EditRequest(sound=sound_path, sound_name=sound_name, source=source, source_kind=source_kind,
                           source_name=source_name, text=_text(text, self.limits.max_text_chars),
                           steps=_number("steps", steps, MIN_STEPS, self.limits.max_steps),
                           invert_steps=_number("inversion steps", invert_steps, MIN_INVERT_STEPS, self.limits.max_invert_steps),
                           inversion_method=None if method == AUTOMATIC else method,
                           photo_encoder=None if encoder == AUTOMATIC else encoder,
                           camera=Camera(translate=(_number("translate X", translate_x, *TRANSLATE_RANGE, whole=False),
                                                    _number("translate Y", translate_y, *TRANSLATE_RANGE, whole=False)),
                                         rotate=_number("rotate", rotate, *ROTATE_RANGE, whole=False)))

    def edit(self, sound, source_kind, seed, photo, latent, text, steps, invert_steps, strength, inversion_method,
             photo_encoder, translate_x, translate_y, rotate, gallery, session: gr.Request) -> Iterator[tuple]:
        """Run the edit in a worker thread, yielding previews and a status line (steps, time elapsed, time left) as it
        goes; Cancel, or this generator closing (a closed page), stops the optimisation after its current step."""
        request = self.request(sound, source_kind, seed, photo, latent, text, steps, invert_steps, inversion_method,
                               photo_encoder, translate_x, translate_y, rotate)
        strength = _number("strength", strength, *STRENGTH_RANGE, whole=False)  # before the minutes of the edit
        files = {request.sound: request.sound_name}
        if isinstance(request.source, Path):
            files[request.source] = request.source_name
        job = lambda report, cancelled: self.engine.edit(request, report, cancelled)  # noqa: E731
        clock = None
        for kind, value in self._running(session, job, files):
            if kind == "step":
                done, total, preview = value
                clock = clock or ProgressClock()  # from the first report, when the job has the device
                what = "inverting the photo, then editing" if done == 0 and request.source_kind == "photo" else "editing"
                yield (preview if preview is not None else gr.skip()), *[gr.skip()] * 4, clock.line(what, done, total)
        run: EditedRun = value
        image, files = self._show(run, strength)
        gallery = ([(image, run.label)] + list(gallery or []))[:GALLERY_SIZE]
        took = f" in {clock.clock() - clock.started:.0f} s" if clock else ""
        yield image, run, files, gallery, gallery, f"done{took}: {run.label}{_inversion_note(run)}"

    def waiting(self) -> str:
        """The status line the moment Edit is pressed, before the device is free."""
        return "waiting for the device: another visitor's job is running" if self._cancels else "starting"

    def stopped(self, run: Optional[EditedRun], strength: float, why: str) -> tuple:
        """After a cancelled or failed edit: the previous result and its downloads again (none before a first edit),
        never a half-finished preview beside the last run's files; the status says what happened."""
        if run is None:
            return None, None, f"{why}; no result yet"
        image, files = self._show(run, strength)
        return image, files, f"{why}; the previous result is shown"

    def _running(self, session: gr.Request, job, files: dict[Path, str]) -> Iterator[tuple[str, object]]:
        """Run job(report, cancelled) in a worker thread: yields ("step", what it reported) as it goes, then ("done", its
        result). Its user errors become page errors naming `files` (server path -> the visitor's name); Cancel, or this
        generator closing (a closed page), sets `cancelled`, after which no step is reported."""
        updates: queue.Queue = queue.Queue()
        cancelled = self._cancels[session.session_hash] = threading.Event()

        def work() -> None:
            try:
                updates.put(("done", job(lambda *step: updates.put(("step", step)), cancelled)))
            except BaseException as exc:  # handed to the page thread, which shows it or re-raises it
                updates.put(("error", exc))

        threading.Thread(target=work, name="sgsim-demo-job", daemon=True).start()
        try:
            while True:
                kind, value = updates.get()
                if kind == "error":
                    if not isinstance(value, user_errors()):
                        raise value
                    message = str(value)
                    for path, name in files.items():
                        message = public_message(message, path, name)
                    raise _shown_error(message)
                if kind == "step" and cancelled.is_set():
                    continue  # queued before Cancel, or from the step then under way: it would overwrite "cancelled"
                yield kind, value
                if kind == "done":
                    return
        finally:
            cancelled.set()
            if self._cancels.get(session.session_hash) is cancelled:
                del self._cancels[session.session_hash]

    def video_request(self, sound, seed, fps, keyframe_every, steps) -> VideoRequest:
        """The visitor's video inputs as a VideoRequest, the sound checked, every number within the limits."""
        sound_path, sound_name = self._upload(sound, "sound")
        keyframe_every = _number("seconds between keyframes", keyframe_every, *KEYFRAME_RANGE, whole=False)
        try:
            check_keyframes(sound_path, self.limits, sound_name, keyframe_every)
        except user_errors() as exc:
            raise _shown_error(public_message(exc, sound_path, sound_name)) from None
        return VideoRequest(sound=sound_path, sound_name=sound_name, seed=_number("the seed", seed, 0, SEED_MAX),
                            fps=_number("fps", fps, 1, self.limits.max_fps), keyframe_every=keyframe_every,
                            steps=_number("steps", steps, 1, self.limits.max_video_steps))

    def video(self, sound, seed, fps, keyframe_every, steps, session: gr.Request) -> Iterator[tuple]:
        """Make the video in a worker thread with a status line per stage; show it and offer it for download."""
        request = self.video_request(sound, seed, fps, keyframe_every, steps)
        job = lambda report, cancelled: self.engine.video(request, report, cancelled)  # noqa: E731
        clocks: dict[str, ProgressClock] = {}
        for kind, value in self._running(session, job, {request.sound: request.sound_name}):
            if kind == "step":
                stage, done, total = value
                what, unit = VIDEO_STAGES[stage]
                clock = clocks.setdefault(stage, ProgressClock())  # each stage has its own pace
                yield gr.skip(), gr.skip(), clock.line(what, done, total, unit)
        yield str(value), [str(value)], "done: the video is ready"

    def cancel(self, session: gr.Request) -> bool:
        """Stop this page's running job (Gradio's own cancelling only closes the handler at its next yield); whether
        one was running."""
        running = self._cancels.get(session.session_hash)
        if running is not None:
            running.set()
        return running is not None

    def cancel_edit(self, run: Optional[EditedRun], strength: float, session: gr.Request) -> tuple:
        """Cancel: the edit stops, the previous result comes back and the status says "cancelled"."""
        if not self.cancel(session):
            return gr.skip(), gr.skip(), "nothing to cancel"
        return self.stopped(run, strength, "cancelled")

    def cancel_video(self, session: gr.Request) -> str:
        return "cancelled" if self.cancel(session) else "nothing to cancel"

    def restrength(self, run: Optional[EditedRun], strength: float):
        """The result at another strength (one synthesis) and its downloads; nothing to do before the first edit."""
        if run is None:
            return gr.skip(), gr.skip()
        return self._show(run, _number("strength", strength, *STRENGTH_RANGE, whole=False))

    def _show(self, run: EditedRun, strength: float) -> tuple[np.ndarray, list[str]]:
        from sgsim.outputs import to_uint8

        image = self.engine.render(run, strength)
        files = self.engine.write_downloads(run, strength, image)
        return to_uint8(image)[0], [str(path) for path in files]

    def build(self) -> gr.Blocks:
        """The page: an Edit tab (inputs on the left, the result, strength and downloads on the right, the gallery
        below) and a Video tab (sound, seed and timing on the left, the MP4 and its download on the right)."""
        with gr.Blocks(title=TITLE, analytics_enabled=False, delete_cache=(3600, 24 * 3600)) as demo:
            run = gr.State(None)
            history = gr.State([])
            gr.Markdown(f"# {TITLE}\n{INTRO}")
            with gr.Tab("Edit") as edit_tab:
                with gr.Row():
                    with gr.Column():
                        sound = gr.Audio(label="Sound", sources=["upload", "microphone"], type="filepath", elem_id="sound")
                        if self.examples:
                            gr.Examples([[str(path)] for path in self.examples], inputs=[sound], label="Example sounds")
                        source_kind = gr.Radio([(label, key) for key, label in SOURCES.items()], value="seed", label="Start from")
                        with gr.Row(visible=True) as seed_row:
                            seed = gr.Number(value=1, precision=0, minimum=0, maximum=SEED_MAX, label="Seed", elem_id="seed")
                            random_seed = gr.Button("Random", size="sm")
                        with gr.Column(visible=False) as photo_box:
                            photo = gr.Image(label="Photo", type="filepath", sources=["upload"], elem_id="photo")
                            inversion_method = gr.Radio([AUTOMATIC, *INVERSION_METHODS], value=AUTOMATIC,
                                                        label="Inversion method", info=_help("inversion_method"),
                                                        elem_id="inversion-method")
                            photo_encoder = gr.Dropdown(list(self.photo_encoders), value=AUTOMATIC, label="Photo encoder",
                                                        info=_help("photo_encoder"), elem_id="photo-encoder")
                        latent = gr.File(label="Latent (.npz from sgsim edit, generate or invert)", file_types=[".npz"],
                                         visible=False, elem_id="latent")
                        text = gr.Textbox(label="Text to mix with the sound (optional)", placeholder="e.g. a snowy mountain")
                        with gr.Row(visible=self.engine.movable, elem_id="camera"):  # StyleGAN3 generators only
                            translate_x = gr.Slider(*TRANSLATE_RANGE, value=0.0, step=0.01, label="Translate X",
                                                    info=TRANSLATE_HELP, elem_id="translate-x")
                            translate_y = gr.Slider(*TRANSLATE_RANGE, value=0.0, step=0.01, label="Translate Y",
                                                    info=TRANSLATE_HELP, elem_id="translate-y")
                            rotate = gr.Slider(*ROTATE_RANGE, value=0.0, step=1, label="Rotate (degrees)", info=ROTATE_HELP,
                                               elem_id="rotate")
                        with gr.Accordion("Settings", open=False):
                            steps = gr.Number(value=DEFAULT_STEPS, precision=0, minimum=MIN_STEPS, maximum=self.limits.max_steps,
                                              label="Optimisation steps", elem_id="steps")
                            invert_steps = gr.Number(value=DEFAULT_INVERT_STEPS, precision=0, minimum=MIN_INVERT_STEPS,
                                                     maximum=self.limits.max_invert_steps, label="Inversion steps (photo)")
                        with gr.Row():
                            edit = gr.Button("Edit", variant="primary", elem_id="edit")
                            cancel = gr.Button("Cancel", variant="stop", elem_id="cancel")
                        status = gr.Markdown("", elem_id="status")
                    with gr.Column():
                        result = gr.Image(label="Result", type="numpy", interactive=False, format="png", height=RESULT_HEIGHT,
                                          elem_id="result")
                        strength = gr.Slider(*STRENGTH_RANGE, value=1.0, step=0.05, label="Strength", elem_id="strength")
                        downloads = gr.File(label="Downloads", file_count="multiple", interactive=False, elem_id="downloads")
                gallery = gr.Gallery(label="Results", height=2 * THUMBNAIL_PX + 100, object_fit="contain", preview=False, interactive=False,
                                     elem_id="gallery")
            with gr.Tab("Video") as video_tab:
                with gr.Row():
                    with gr.Column():
                        video_sound = gr.Audio(label="Sound", sources=["upload", "microphone"], type="filepath",
                                               elem_id="video-sound")
                        video_seed = gr.Number(value=1, precision=0, minimum=0, maximum=SEED_MAX, label="Seed",
                                               elem_id="video-seed")
                        fps = gr.Slider(1, self.limits.max_fps, value=min(DEFAULT_VIDEO_FPS, self.limits.max_fps), step=1,
                                        label="Frames per second", elem_id="fps")
                        keyframe_every = gr.Slider(*KEYFRAME_RANGE, value=1.0, step=0.25, label="Seconds between keyframes",
                                                   elem_id="keyframe-every")
                        video_steps = gr.Number(value=min(DEFAULT_VIDEO_STEPS, self.limits.max_video_steps), precision=0,
                                                minimum=1, maximum=self.limits.max_video_steps, label="Optimisation steps",
                                                elem_id="video-steps")
                        with gr.Row():
                            make_video = gr.Button("Make video", variant="primary", elem_id="make-video")
                            cancel_video = gr.Button("Cancel", variant="stop", elem_id="cancel-video")
                        video_status = gr.Markdown("", elem_id="video-status")
                    with gr.Column():
                        video = gr.Video(label="Video", interactive=False, height=RESULT_HEIGHT, elem_id="video")
                        video_download = gr.File(label="Download", file_count="multiple", interactive=False,
                                                 elem_id="video-download")

            source_kind.change(lambda kind: (gr.update(visible=kind == "seed"), gr.update(visible=kind == "photo"),
                                             gr.update(visible=kind == "latent")),
                               source_kind, [seed_row, photo_box, latent], queue=False, show_progress="hidden")
            random_seed.click(lambda: random.randint(0, SEED_MAX), None, seed, queue=False, show_progress="hidden")
            # preprocess=False: the handlers get the raw values and sgsim checks every one (finite, in range, typed);
            # a value Gradio's own preprocessing fails on (a photo claiming 65535x65535) reached the page as "error: null".
            raw = {"preprocess": False}
            for tab in (edit_tab, video_tab):  # a message belongs to its tab
                tab.select(None, None, None, js=CLOSE_MESSAGES_JS)
            for audio in (sound, video_sound):  # a new sound's message replaces the last one
                audio.upload(None, None, None, js=CLOSE_MESSAGES_JS)
                audio.upload(self.check_sound, audio, None, show_progress="hidden", **raw)
                audio.stop_recording(self.check_sound, audio, None, show_progress="hidden", **raw)
            # The status line and Cancel speak for a job: Gradio's progress overlay is hidden (its timer restarts at
            # every preview, and it would mark Downloads as failed while the previous result stays).
            edit.click(self.waiting, None, status, queue=False, show_progress="hidden", js=CLOSE_MESSAGES_JS)
            running = edit.click(
                self.edit, [sound, source_kind, seed, photo, latent, text, steps, invert_steps, strength, inversion_method,
                            photo_encoder, translate_x, translate_y, rotate, history],
                [result, run, downloads, history, gallery, status], concurrency_id=DEVICE_QUEUE, concurrency_limit=1,
                show_progress="hidden", **raw,
            )
            running.failure(lambda run, strength: self.stopped(run, strength, "the edit failed (see the message)"),
                            [run, strength], [result, downloads, status], concurrency_id=DEVICE_QUEUE, show_progress="hidden")
            cancel.click(self.cancel_edit, [run, strength], [result, downloads, status], cancels=[running], queue=False,
                         show_progress="hidden")
            strength.input(self.restrength, [run, strength], [result, downloads], concurrency_id=DEVICE_QUEUE,
                           concurrency_limit=1, trigger_mode="always_last", show_progress="hidden", **raw)
            make_video.click(self.waiting, None, video_status, queue=False, show_progress="hidden", js=CLOSE_MESSAGES_JS)
            making = make_video.click(self.video, [video_sound, video_seed, fps, keyframe_every, video_steps],
                                      [video, video_download, video_status], concurrency_id=DEVICE_QUEUE, concurrency_limit=1,
                                      show_progress="hidden", **raw)
            making.failure(lambda: "the video failed (see the message)", None, video_status, show_progress="hidden")
            cancel_video.click(self.cancel_video, None, video_status, cancels=[making], queue=False, show_progress="hidden")
        return demo


def serve(page: DemoPage, host: str, port: int, block: bool = True) -> gr.Blocks:
    """Start the page's server (no share link, no telemetry, uploads capped); with block=False return it running."""
    demo = page.build()
    demo.queue(default_concurrency_limit=1)
    demo.launch(server_name=host, server_port=port, share=False, prevent_thread_lock=not block, quiet=True,
                show_error=False, max_file_size=int(page.limits.max_file_mb * MB), ssr_mode=False, allowed_paths=[],
                footer_links=[], css=PAGE_CSS)
    return demo
