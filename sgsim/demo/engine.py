"""The demo's one contact with the editing API: build the Editor, run an edit with progress, previews and
cancellation, re-render an edit at another strength, make a sound-driven video, and write the files a visitor
downloads.

One lock per engine (one engine per device) lets a single optimisation or re-render use the generator at a time:
an edit swaps the generator's noise buffers, so a concurrent render would draw with the wrong ones.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np
import torch

from sgsim.camera import Camera
from sgsim.editing import ImageSource, LatentSource, SeedSource, Target
from sgsim.outputs import edit_run_record, file_stems, weights_record, write_json
from sgsim.errors import SgsimError
from sgsim.settings import EditSettings, default_of
from sgsim.worlds import video_window

PREVIEWS = 20  # about this many intermediate images are shown while an edit runs, after the first step's
RESULT_FILES = ("result.png", "latent.npz", "run.json")
VIDEO_FILE = "video.mp4"

# progress(steps done, steps in all, preview [H, W, 3] uint8 or None)
Progress = Callable[[int, int, Optional[np.ndarray]], None]
# video progress(stage, done, total), stage "embed", "optimise" or "render" as sgsim.editing.video reports it
VideoProgress = Callable[[str, int, int], None]


class EditCancelled(SgsimError):
    """The visitor cancelled the edit; the optimisation stopped after its current step."""


@dataclass(frozen=True)
class EditRequest:
    """One edit a visitor asked for; every file in it has passed sgsim.demo.uploads' checks."""

    sound: Path
    sound_name: str  # the file name the visitor gave, for labels and run.json
    source: Union[int, Path]  # a seed, a photo to invert or a latent file (.npz)
    source_kind: str  # "seed", "photo" or "latent"
    source_name: Optional[str] = None  # the photo's or latent file's name as the visitor gave it
    text: Optional[str] = None  # mixed with the sound (equal weights)
    steps: int = default_of("steps")
    invert_steps: int = default_of("invert_steps")
    inversion_method: Optional[str] = None  # one of INVERSION_METHODS; None: the photo policy's choice
    photo_encoder: Optional[str] = None  # a manifest name; None: the server's --photo-encoder or the policy's choice
    camera: Camera = Camera()  # a StyleGAN3 generator's input transform for the result (the previews are untransformed)


@dataclass(frozen=True)
class VideoRequest:
    """One sound-driven video a visitor asked for (from a seed); the sound has passed sgsim.demo.uploads' checks."""

    sound: Path
    sound_name: str
    seed: int
    fps: float
    keyframe_every: float  # seconds
    steps: int


@dataclass
class EditedRun:
    """What an edit leaves for the strength slider and the downloads."""

    folder: Path  # where this run's downloads are written
    label: str  # a caption for the gallery
    source_latent: torch.Tensor  # [num_ws, w_dim]
    edited_latent: torch.Tensor  # [num_ws, w_dim], strength 1
    noise: dict[str, torch.Tensor] = field(default_factory=dict)  # noise buffers to render with (an inverted photo's)
    camera: Camera = Camera()  # the input transform its renders go through (StyleGAN3; the identity otherwise)
    record: dict = field(default_factory=dict)  # run.json, less the strength


def build_editor(generator: str, encoder: str, encoder_checkpoint: Optional[Path], clip: Optional[str], device: Optional[str]):
    """The Editor for the demo's networks, from manifest names or paths as `sgsim edit` takes them."""
    from sgsim.editing import Editor

    return Editor.from_pretrained(generator, encoder, encoder_checkpoint=encoder_checkpoint, clip=clip, device=device)


def _typed_source(request: EditRequest):
    """The Editor's source for a request: a seed, a photo to invert, or a latent file with the noise stored beside it."""
    if request.source_kind == "seed":
        return SeedSource(int(request.source))
    if request.source_kind == "photo":
        return ImageSource(request.source)
    from sgsim.latents import read_latent_file

    stored = read_latent_file(request.source)
    return LatentSource(stored.latent, stored.noise)


class DemoEngine:
    """Runs a visitor's edits on one Editor, one at a time, and keeps their results in `results`."""

    def __init__(self, editor, results: Path, networks: dict[str, Optional[str]]):
        self.editor = editor
        self.results = Path(results)
        self.results.mkdir(parents=True, exist_ok=True)
        self.networks = networks  # the names or paths the demo was started with, for run.json
        named = {"generator": networks.get("generator"), "encoder": networks.get("encoder"),
                 "encoder_checkpoint": networks.get("encoder_checkpoint"), "clip_weights": networks.get("clip"),
                 "photo_encoder": networks.get("photo_encoder"), "world": networks.get("world")}
        self.settings = EditSettings(**{name: value for name, value in named.items() if value is not None})
        self._device = threading.Lock()
        self._runs = 0
        self._weights: Optional[dict] = None

    @property
    def movable(self) -> bool:
        """Whether the generator's picture can be translated and rotated (a StyleGAN3 generator's input transform)."""
        from sgsim.camera import is_movable

        return is_movable(self.editor.generator)

    def edit(self, request: EditRequest, progress: Progress, cancelled: threading.Event) -> EditedRun:
        """Optimise toward the request's sound (and text), a photo inverted first as sgsim's photo policy plans it with
        the request's method and encoder; calls `progress` after every step, with a preview every few steps. Setting
        `cancelled` stops the run at the next step with EditCancelled."""
        from sgsim.camera import require_movable
        from sgsim.outputs import to_uint8

        require_movable(self.editor.generator, request.camera)  # before the device is waited for
        source = _typed_source(request)
        photo = {"inversion_method": request.inversion_method,
                 **({"photo_encoder": request.photo_encoder} if request.photo_encoder is not None else {})}
        settings = self.settings.updated(steps=request.steps, invert_steps=request.invert_steps, **photo)
        every = max(1, request.steps // PREVIEWS)

        def on_step(step: int, losses: dict[str, float], images: torch.Tensor) -> None:
            if cancelled.is_set():
                raise EditCancelled(f"edit cancelled at step {step + 1} of {request.steps}")
            done = step + 1
            shown = done == 1 or done % every == 0  # the first step's image at once, so a visitor sees the edit begin
            progress(done, request.steps, to_uint8(images[:1])[0] if shown else None)

        with self._device:
            if cancelled.is_set():
                raise EditCancelled("edit cancelled before it started")
            progress(0, request.steps, None)
            started = time.perf_counter()
            result = self.editor.edit(source, Target(audio=request.sound, text=request.text or None), settings,
                                      callback=on_step, callback_values=("images",))  # each step's image, for the previews
            seconds = time.perf_counter() - started
            weights = self._weight_record()
            self._runs += 1
            folder = self.results / f"{self._runs:04d}-{file_stems([Path(request.sound_name)])[0]}"
        folder.mkdir(parents=True, exist_ok=True)
        label = request.sound_name + (f" + {request.text!r}" if request.text else "")
        return EditedRun(
            folder=folder, label=label, source_latent=result.source_latent, edited_latent=result.edited_latents[0],
            noise={name: value.to(self.editor.device) for name, value in result.noise.items()}, camera=request.camera,
            record=edit_run_record(
                "demo", None, settings, result.settings,  # argv: the server's command line
                source={"kind": request.source_kind,
                        **({"seed": request.source} if request.source_kind == "seed" else {"file": request.source_name}),
                        "inversion": self.editor.inversions[-1] if request.source_kind == "photo" else None},
                target={"audio": request.sound_name, "text": request.text or None},
                camera=None if request.camera.is_identity else request.camera.record(),  # as `sgsim generate` records it
                weights=weights,
                final_losses={name: float(values[-1, 0]) for name, values in result.losses.items()},
                timings_s={"edit": seconds},
            ),
        )

    def video(self, request: VideoRequest, progress: VideoProgress, cancelled: threading.Event) -> Path:
        """Make the request's video and write it (H.264 with the sound as AAC) into a fresh results folder; returns
        the MP4's path. Setting `cancelled` stops it at the next step or frame batch with EditCancelled."""
        from sgsim.atomic import staged_output_dir
        from sgsim.editing.video import write_video

        def report(stage: str, done: int, total: int) -> None:
            if cancelled.is_set():
                raise EditCancelled(f"video cancelled while it was at {stage} {done} of {total}")
            progress(stage, done, total)

        with self._device:
            if cancelled.is_set():
                raise EditCancelled("video cancelled before it started")
            video = self.editor.video(request.sound, SeedSource(request.seed), fps=request.fps,
                                      keyframe_every=request.keyframe_every, steps=request.steps, progress=report,
                                      window=video_window(None, self.settings.world))
            self._runs += 1
            folder = self.results / f"{self._runs:04d}-{file_stems([Path(request.sound_name)])[0]}-video"
            with staged_output_dir(folder) as staging:  # a video cancelled while rendering leaves no folder
                write_video(staging / VIDEO_FILE, video, progress=report)
        return folder / VIDEO_FILE

    def render(self, run: EditedRun, strength: float) -> torch.Tensor:
        """The image [3, H, W] in [-1, 1] of w_src + strength (w_edit - w_src) through the run's camera: one synthesis."""
        from sgsim.editing.modes import generator_lock
        from stylegan2.noise import swapped_noise

        latent = self.latent_at(run, strength)
        transforms = None if run.camera.is_identity else run.camera.transforms([0.0]).to(self.editor.device)
        with self._device, generator_lock(self.editor.generator), swapped_noise(self.editor.generator, run.noise):
            return self.editor.render(latent[None], transforms)[0]

    @staticmethod
    def latent_at(run: EditedRun, strength: float) -> torch.Tensor:
        """W+ [num_ws, w_dim] of the edit at `strength` (0: the source, 1: the optimised latent)."""
        from sgsim.settings import check_strengths
        from sgsim.editing.mixing import sweep_strengths

        strength = check_strengths([strength])[0]  # NaN would pass into latent.npz and run.json
        return sweep_strengths(run.source_latent, run.edited_latent[None], torch.tensor([[strength]]))[0, 0]

    def write_downloads(self, run: EditedRun, strength: float, image: torch.Tensor) -> list[Path]:
        """result.png (the image shown), latent.npz (its W+ as 'w', so `sgsim edit --latent` starts from it; with the
        edit's 'source', the strength and any fitted noise) and run.json, each written atomically."""
        from sgsim.latents import write_latent_file
        from sgsim.outputs import write_png

        png, latent, report = (run.folder / name for name in RESULT_FILES)
        write_png(png, image)
        write_latent_file(latent, noise=run.noise, w=self.latent_at(run, strength), source=run.source_latent,
                          strength=np.float32(strength))
        write_json(report, {**run.record, "strength": float(strength), "outputs": list(RESULT_FILES)})
        return [png, latent, report]

    def _weight_record(self) -> dict:
        """Path and sha256 of every weights file the editor has loaded, hashed once per file."""
        if self._weights is None or set(self._weights) != set(self.editor.weight_files):
            self._weights = weights_record(self.editor.weight_files)
        return self._weights
