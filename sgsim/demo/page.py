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
from pathlib import Path
from typing import Iterator, Optional

import gradio as gr
import numpy as np
from gradio.utils import get_upload_folder

from sgsim.cli.options import SEED_MAX
from sgsim.demo.engine import DemoEngine, EditedRun, EditRequest
from sgsim.demo.uploads import MB, UploadLimits, check_image, check_size, check_sound, public_message, uploaded_file
from sgsim.errors import user_errors

DEVICE_QUEUE = "device"  # concurrency group of everything that uses the generator: one at a time
RESULT_HEIGHT = 384  # pixels of the result on the page (the image keeps its shape)
GALLERY_SIZE = 12  # most recent results kept in a visitor's gallery
SOURCES = {"seed": "Seed", "photo": "Photo (inverted first)", "latent": "Latent file (.npz)"}
STRENGTH_RANGE = (0.0, 2.0)  # of the slider; 0 is the source, 1 the optimised edit, beyond exaggerates
DEFAULT_STEPS = 300  # as `sgsim edit`
DEFAULT_INVERT_STEPS = 300  # fewer than `sgsim edit`'s 1000: a visitor waits for them
PAGE_CSS = "#result img { width: 100%; height: 100%; object-fit: contain; }"  # small generators' images fill the box
TITLE = "sgsim: sound-guided image editing"
INTRO = ("Upload or record a sound (or pick an example), choose where the edit starts, and press **Edit**: "
         "a StyleGAN2 latent is optimised until CLIP sees the sound in the image. "
         "The strength slider re-renders the result along the edit without optimising again.")


def _shown_error(message: str) -> gr.Error:
    """A page error showing `message` as text (it may hold a visitor's file name, never markup)."""
    return gr.Error(html.escape(message), duration=None, print_exception=False)


def _whole_number(what: str, value, least: int, most: int) -> int:
    """A number field's value as an int in [least, most], or a page error saying what it must be."""
    try:
        if value is not None and float(value).is_integer() and least <= value <= most:
            return int(value)
    except (TypeError, ValueError, OverflowError):
        pass
    raise _shown_error(f"{what} must be a whole number from {least} to {most}, got {value}")


class DemoPage:
    """The page's event handlers over one DemoEngine; every file a handler opens comes from `uploads`."""

    def __init__(self, engine: DemoEngine, limits: UploadLimits = UploadLimits(), examples: Optional[Path] = None):
        self.engine = engine
        self.uploads = Path(get_upload_folder()).resolve()  # Gradio's, named by GRADIO_TEMP_DIR when the page is made
        self.limits = limits
        self._cancels: dict[str, threading.Event] = {}  # session -> the flag that stops its running edit
        self.examples = sorted(Path(examples).glob("*.wav")) if examples is not None else []

    def _upload(self, value, kind: str) -> tuple[Path, str]:
        """A checked upload (path inside the upload folder) and the name its sender gave it, or a page error."""
        if value is None:
            raise _shown_error(f"no {kind} given; upload one first")
        path = value if isinstance(value, str) else value.path if hasattr(value, "path") else value["path"]
        name = Path(path).name
        try:
            checked = uploaded_file(path, self.uploads)
            {"sound": check_sound, "photo": check_image, "latent file": check_size}[kind](checked, self.limits, name)
        except user_errors() as exc:
            raise _shown_error(public_message(exc, Path(path).resolve(), name)) from None
        return checked, name

    def check_sound(self, sound: Optional[str]) -> None:
        """On upload or recording: say at once what is wrong with a sound."""
        if sound is not None:
            self._upload(sound, "sound")

    def request(self, sound, source_kind, seed, photo, latent, text, steps, invert_steps) -> EditRequest:
        """The visitor's inputs as an EditRequest, every file checked, every number within the limits."""
        sound_path, sound_name = self._upload(sound, "sound")
        if source_kind == "seed":
            source, source_name = _whole_number("the seed", seed, 0, SEED_MAX), None
        elif source_kind in ("photo", "latent"):
            source, source_name = self._upload(photo if source_kind == "photo" else latent,
                                               "photo" if source_kind == "photo" else "latent file")
        else:
            raise _shown_error(f"unknown source {source_kind!r}; choose one of {', '.join(SOURCES)}")
        return EditRequest(sound=sound_path, sound_name=sound_name, source=source, source_kind=source_kind,
                           source_name=source_name, text=(text or "").strip() or None,
                           steps=_whole_number("steps", steps, 1, self.limits.max_steps),
                           invert_steps=_whole_number("inversion steps", invert_steps, 1, self.limits.max_invert_steps))

    def edit(self, sound, source_kind, seed, photo, latent, text, steps, invert_steps, strength, gallery,
             session: gr.Request, progress=gr.Progress()) -> Iterator[tuple]:
        """Run the edit in a worker thread, yielding previews as it goes; Cancel, or this generator closing (a closed
        page), stops the optimisation after its current step."""
        request = self.request(sound, source_kind, seed, photo, latent, text, steps, invert_steps)
        updates: queue.Queue = queue.Queue()
        cancelled = self._cancels[session.session_hash] = threading.Event()

        def work() -> None:
            try:
                updates.put(("done", self.engine.edit(request, lambda *step: updates.put(("step", step)), cancelled)))
            except BaseException as exc:  # handed to the page thread, which shows it or re-raises it
                updates.put(("error", exc))

        threading.Thread(target=work, name="sgsim-demo-edit", daemon=True).start()
        try:
            while True:
                kind, value = updates.get()
                if kind == "step":
                    done, total, preview = value
                    what = "inverting the photo, then editing" if done == 0 and request.source_kind == "photo" else "editing"
                    progress((done, total), desc=what, unit="steps")
                    if preview is not None:
                        yield preview, gr.skip(), gr.skip(), gr.skip(), gr.skip()
                elif kind == "error":
                    if not isinstance(value, user_errors()):
                        raise value
                    message = public_message(value, request.sound, request.sound_name)
                    if isinstance(request.source, Path):
                        message = message.replace(str(request.source), request.source_name)
                    raise _shown_error(message)
                else:
                    break
        finally:
            cancelled.set()
            if self._cancels.get(session.session_hash) is cancelled:
                del self._cancels[session.session_hash]
        run: EditedRun = value
        image, files = self._show(run, strength)
        gallery = ([(image, run.label)] + list(gallery or []))[:GALLERY_SIZE]
        yield image, run, files, gallery, gallery

    def cancel(self, session: gr.Request) -> None:
        """Stop this page's running edit; Gradio's own cancelling only closes the handler at its next yield."""
        running = self._cancels.get(session.session_hash)
        if running is not None:
            running.set()

    def restrength(self, run: Optional[EditedRun], strength: float):
        """The result at another strength (one synthesis) and its downloads; nothing to do before the first edit."""
        if run is None:
            return gr.skip(), gr.skip()
        return self._show(run, strength)

    def _show(self, run: EditedRun, strength: float) -> tuple[np.ndarray, list[str]]:
        from sgsim.outputs import to_uint8

        image = self.engine.render(run, strength)
        files = self.engine.write_downloads(run, strength, image)
        return to_uint8(image)[0], [str(path) for path in files]

    def build(self) -> gr.Blocks:
        """The page: inputs on the left, the result, strength and downloads on the right, the gallery below."""
        with gr.Blocks(title=TITLE, analytics_enabled=False, delete_cache=(3600, 24 * 3600)) as demo:
            run = gr.State(None)
            history = gr.State([])
            gr.Markdown(f"# {TITLE}\n{INTRO}")
            with gr.Row():
                with gr.Column():
                    sound = gr.Audio(label="Sound", sources=["upload", "microphone"], type="filepath", elem_id="sound")
                    if self.examples:
                        gr.Examples([[str(path)] for path in self.examples], inputs=[sound], label="Example sounds")
                    source_kind = gr.Radio([(label, key) for key, label in SOURCES.items()], value="seed", label="Start from")
                    with gr.Row(visible=True) as seed_row:
                        seed = gr.Number(value=1, precision=0, minimum=0, maximum=SEED_MAX, label="Seed", elem_id="seed")
                        random_seed = gr.Button("Random", size="sm")
                    photo = gr.Image(label="Photo", type="filepath", sources=["upload"], visible=False, elem_id="photo")
                    latent = gr.File(label="Latent (.npz from sgsim edit, generate or invert)", file_types=[".npz"],
                                     visible=False, elem_id="latent")
                    text = gr.Textbox(label="Text to mix with the sound (optional)", placeholder="e.g. a snowy mountain")
                    with gr.Accordion("Settings", open=False):
                        steps = gr.Number(value=DEFAULT_STEPS, precision=0, minimum=1, maximum=self.limits.max_steps,
                                          label="Optimisation steps", elem_id="steps")
                        invert_steps = gr.Number(value=DEFAULT_INVERT_STEPS, precision=0, minimum=1,
                                                 maximum=self.limits.max_invert_steps, label="Inversion steps (photo)")
                    with gr.Row():
                        edit = gr.Button("Edit", variant="primary", elem_id="edit")
                        cancel = gr.Button("Cancel", variant="stop", elem_id="cancel")
                with gr.Column():
                    result = gr.Image(label="Result", type="numpy", interactive=False, format="png", height=RESULT_HEIGHT,
                                      elem_id="result")
                    strength = gr.Slider(*STRENGTH_RANGE, value=1.0, step=0.05, label="Strength", elem_id="strength")
                    downloads = gr.File(label="Downloads", file_count="multiple", interactive=False, elem_id="downloads")
            gallery = gr.Gallery(label="Results", columns=6, height=RESULT_HEIGHT // 2, object_fit="contain", preview=False,
                                 interactive=False, elem_id="gallery")

            source_kind.change(lambda kind: (gr.update(visible=kind == "seed"), gr.update(visible=kind == "photo"),
                                             gr.update(visible=kind == "latent")),
                               source_kind, [seed_row, photo, latent], queue=False, show_progress="hidden")
            random_seed.click(lambda: random.randint(0, SEED_MAX), None, seed, queue=False, show_progress="hidden")
            sound.upload(self.check_sound, sound, None, show_progress="hidden")
            sound.stop_recording(self.check_sound, sound, None, show_progress="hidden")
            running = edit.click(
                self.edit, [sound, source_kind, seed, photo, latent, text, steps, invert_steps, strength, history],
                [result, run, downloads, history, gallery], concurrency_id=DEVICE_QUEUE, concurrency_limit=1,
                show_progress_on=[downloads],
            )
            cancel.click(self.cancel, None, None, cancels=[running], queue=False, show_progress="hidden")
            strength.input(self.restrength, [run, strength], [result, downloads], concurrency_id=DEVICE_QUEUE,
                           concurrency_limit=1, trigger_mode="always_last", show_progress="hidden")
        return demo


def serve(page: DemoPage, host: str, port: int, block: bool = True) -> gr.Blocks:
    """Start the page's server (no share link, no telemetry, uploads capped); with block=False return it running."""
    demo = page.build()
    demo.queue(default_concurrency_limit=1)
    demo.launch(server_name=host, server_port=port, share=False, prevent_thread_lock=not block, quiet=True,
                show_error=False, max_file_size=int(page.limits.max_file_mb * MB), ssr_mode=False, allowed_paths=[],
                footer_links=[], css=PAGE_CSS)
    return demo
