"""Sound-driven video: the picture follows a track over time.

Keyframes every `keyframe_every` seconds each take the window of the track centred on them as their target;
the keyframe latents are optimised a micro-batch at a time in time order, each toward its window, each micro-batch
warm-started from the keyframe before it and held together by the temporal smoothness term; frames between
keyframes are interpolated linearly in W+ and rendered a few at a time, so a long track never holds its frames in
memory. A quiet window (silence, or the noise floor between sounds) has no target: its keyframe is pinned at the
source, so the picture returns to the source in a quiet stretch and leaves it when the sound comes back.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Mapping, Optional, Union

import numpy as np
import torch

from sgsim.audio import check_long_enough, load_audio, rms_dbfs
from sgsim.editing.mixing import move_by
from sgsim.editing.modes import generator_lock
from sgsim.editing.optimise import choose_work_resolution, working_layers
from sgsim.editing.targets import loudness_strengths
from sgsim.editing.variables import free_rows
from sgsim.editing.video_settings import (DEFAULT_FPS, DEFAULT_KEYFRAME_BATCH, DEFAULT_KEYFRAME_EVERY, DEFAULT_SMOOTHNESS,
                                          DEFAULT_STEPS, DEFAULT_WARM_STEPS, DEFAULT_WINDOW, MAX_FPS, MAX_KEYFRAMES)
from sgsim.errors import AudioError, SgsimError
from sgsim.settings import AUTO_STEPS, check_settings, check_strengths
from stylegan2.noise import swapped_noise

if TYPE_CHECKING:
    from sgsim.camera import Camera
    from sgsim.editing.directions import SoundDirection
    from sgsim.editing.editor import AnySource, Editor

# A window quieter than this has no target. Far above sgsim.audio's -90 dBFS "silent file": a gap between two
# sounds in a recording sits at its noise floor, which carries no direction worth following.
QUIET_WINDOW_DBFS = -60.0
# Nor has a window this far under the track's loudest: a recording's noise floor (room tone, hiss) lies 20 to 40 dB
# under its sounds, often above any fixed level, while a piece's own quiet passages stay within about 20 dB of its
# loudest (the loudness range of EBU R 128 s1 is 5 to 20 LU for most music).
QUIET_BELOW_LOUDEST_DB = 25.0
EMBED_BATCH = 16  # windows embedded at once
RENDER_BATCH = 8  # frames rendered at once

# progress(stage, done, total): stage is "embed", "optimise" or "render"
Progress = Callable[[str, int, int], None]


def frame_count(duration: float, fps: float) -> int:
    """Frames of a `duration`-second video at `fps`: round(duration x fps), at least one."""
    return max(1, int(round(duration * fps)))


def keyframe_times(duration: float, every: float) -> np.ndarray:
    """0, every, 2 every, ... and the track's end: the keyframes bracket every frame time; at most MAX_KEYFRAMES."""
    count = max(1, math.ceil(duration / every - 1e-9))
    if count + 1 > MAX_KEYFRAMES:
        raise SgsimError(f"keyframes every {every:g} s over the {duration:.1f} s sound make {count + 1}, over the limit of "
                         f"{MAX_KEYFRAMES} (MAX_KEYFRAMES); space them at least "
                         f"{duration / (MAX_KEYFRAMES - 1):.3g} s apart or trim the sound")
    return np.minimum(np.arange(count + 1) * every, duration)


def check_timing(fps: float, keyframe_every: float, window: float) -> None:
    """Refuse frame rates, keyframe spacings and windows that are not finite and positive (or absurd)."""
    if not (math.isfinite(fps) and 0 < fps <= MAX_FPS):
        raise SgsimError(f"fps must be a number in (0, {MAX_FPS:g}], got {fps}")
    if not (math.isfinite(keyframe_every) and keyframe_every > 0):
        raise SgsimError(f"keyframe_every must be a finite number of seconds > 0, got {keyframe_every}")
    if not (math.isfinite(window) and window >= 0.1):
        raise SgsimError(f"window must be a finite number of seconds >= 0.1, got {window}")


def window_span(time: float, duration: float, window: float) -> tuple[float, float]:
    """(offset, length) of the `window` seconds centred on `time`, shifted to lie inside the track."""
    length = min(window, duration)
    return min(max(0.0, time - length / 2), duration - length), length


def _read_window(path: Path, time: float, duration: float, window: float, rate: Optional[int], mono: bool) -> np.ndarray:
    offset, length = window_span(time, duration, window)
    return load_audio(path, rate, mono, offset=offset, duration=length)[0]


def window_levels(path: Union[str, Path], times: np.ndarray, window: float) -> np.ndarray:
    """RMS level (dBFS) of the window around each time, read at the file's rate: a cheap check before any network."""
    path = Path(path)
    duration = check_long_enough(path)
    return np.array([rms_dbfs(_read_window(path, float(t), duration, window, None, True)) for t in times])


def audible_windows(levels: np.ndarray) -> np.ndarray:
    """Which windows have a target: at least QUIET_WINDOW_DBFS and within QUIET_BELOW_LOUDEST_DB of the loudest."""
    return levels >= max(QUIET_WINDOW_DBFS, float(levels.max()) - QUIET_BELOW_LOUDEST_DB)


def require_audible(path: Union[str, Path], levels: np.ndarray, window: float) -> None:
    """An AudioError when no window reaches QUIET_WINDOW_DBFS: the picture would have nothing to follow."""
    if not (levels >= QUIET_WINDOW_DBFS).any():
        raise AudioError(f"{path}: every {window:g} s window is below {QUIET_WINDOW_DBFS:g} dBFS (loudest {levels.max():.1f} dBFS), "
                         f"so there is no sound for the picture to follow; pass a track with audible sound")


@dataclass
class KeyframeTargets:
    """What each keyframe aims at: the embedding of its window, or nothing when the window is quiet."""

    times: np.ndarray  # [K] seconds
    directions: torch.Tensor  # [K, embed_dim] L2-normalised; zero rows where not audible
    levels_dbfs: np.ndarray  # [K] RMS level of each window
    audible: np.ndarray  # [K] bool: audible_windows(levels_dbfs)


@torch.no_grad()
def embed_keyframes(path: Union[str, Path], times: np.ndarray, audio_encoder, window: float = DEFAULT_WINDOW,
                    progress: Optional[Progress] = None) -> KeyframeTargets:
    """Embed the window around each keyframe time with the audio encoder, EMBED_BATCH windows at a time; quiet
    windows (audible_windows, judged on the whole track first) get no target. A track with no audible window is an
    AudioError."""
    path = Path(path)
    duration = check_long_enough(path)
    rate, mono = audio_encoder.sample_rate, audio_encoder.mono
    # Audible windows are decoded twice: the quiet rule needs the loudest window before any is embedded, and keeping
    # every window of a long track would cost more memory than decoding them again.
    levels = np.array([rms_dbfs(_read_window(path, float(t), duration, window, rate, mono)) for t in times])
    require_audible(path, levels, window)
    audible = audible_windows(levels)
    directions = torch.zeros(len(times), audio_encoder.embed_dim)
    for start in range(0, len(times), EMBED_BATCH):
        chunk = [k for k in range(start, min(start + EMBED_BATCH, len(times))) if audible[k]]
        if chunk:
            waves = [_read_window(path, float(times[k]), duration, window, rate, mono) for k in chunk]
            length = min(wave.shape[-1] for wave in waves)  # equal spans; resampling may differ by a sample
            batch = torch.from_numpy(np.stack([wave[..., :length] for wave in waves]))
            directions[chunk] = audio_encoder.encode(batch, rate).float().cpu()
        if progress is not None:
            progress("embed", min(start + EMBED_BATCH, len(times)), len(times))
    return KeyframeTargets(times, directions, levels, audible)


class PinnedKeyframes:
    """The W+ rows `layers` of the moving keyframes are free; the other keyframes stay exactly at the source
    (LatentVariables for optimise_latents)."""

    def __init__(self, source: torch.Tensor, moving: np.ndarray, layers=None):
        self.source = source.detach()  # [K, num_ws, w_dim]
        self.index = torch.as_tensor(np.flatnonzero(moving), device=source.device)
        self.rows = free_rows(layers, source.shape[1]).to(source.device)
        self.free = self.source[self.index][:, self.rows].clone().requires_grad_(True)

    def parameters(self) -> list[torch.Tensor]:
        return [self.free]

    def latents(self) -> torch.Tensor:
        moved = self.source[self.index].index_copy(1, self.rows, self.free)
        return self.source.index_copy(0, self.index, moved)


def check_video_steps(steps: Union[int, str]) -> None:
    """Refuse steps auto for a video: its rule and cap are measured on single edits (300 steps), not on keyframe
    micro-batches of DEFAULT_STEPS and DEFAULT_WARM_STEPS warm steps."""
    if steps == AUTO_STEPS:
        raise SgsimError(f"steps auto is for edits and directions, not videos yet (its rule is measured on 300-step edits, "
                         f"a video runs {DEFAULT_STEPS} steps, then {DEFAULT_WARM_STEPS} per warm micro-batch); pass --steps N")


def optimise_keyframes(editor: "Editor", run, start: torch.Tensor, targets: KeyframeTargets, *, steps: int, warm_steps: int,
                       batch: Optional[int], layers=None, on_step: Optional[Callable[[], None]] = None,
                       **loop) -> tuple[torch.Tensor, dict[str, np.ndarray]]:
    """The keyframes [K, num_ws, w_dim] optimised `batch` at a time in time order (None: all at once), and their losses
    [steps, K] (a micro-batch of fewer steps fills the last rows). The first micro-batch runs `steps` from `start`; each
    later one runs `warm_steps`, its keyframes moved from their start as far as the keyframe before them moved (a warm
    start: neighbouring windows sound alike), and that keyframe rides along pinned, so that the smoothness term holds
    the seam. `loop` goes to Editor.optimise (noise, lr, work_resolution, ...)."""
    count = len(start)
    batch = count if batch is None else batch
    optimised = start.clone()
    losses: dict[str, np.ndarray] = {}
    audible = torch.as_tensor(targets.audible, dtype=torch.float32, device=start.device)
    for first in range(0, count, batch):
        chunk = np.arange(max(first - 1, 0), min(first + batch, count))  # with the keyframe before it, pinned
        own = chunk >= first
        moving = targets.audible[chunk] & own
        begin = start[chunk]
        if first > 0:
            begin = begin + torch.as_tensor(moving, device=start.device)[:, None, None] * (optimised[first - 1] - start[first - 1])
            begin[0] = optimised[first - 1]
        chunk_steps = steps if first == 0 else warm_steps
        result = editor.optimise(
            run, begin, targets.directions[chunk], steps=chunk_steps, variables=PinnedKeyframes(begin, moving, layers),
            target_weights=audible[chunk] * torch.as_tensor(own, device=start.device),
            callback=None if on_step is None else (lambda step, values: on_step()), **loop)
        optimised[chunk[own]] = result.latents[own]
        for name, values in result.losses.items():
            losses.setdefault(name, np.full((steps, count), np.nan))[steps - chunk_steps:, chunk[own]] = values[:, own]
    return optimised, losses


def interpolate(times: np.ndarray, latents: torch.Tensor, at: np.ndarray) -> torch.Tensor:
    """W+ latents at times `at`, linear between the bracketing keyframes ([K] times, [K, num_ws, w_dim] latents)."""
    upper = np.clip(np.searchsorted(times, at, side="right"), 1, len(times) - 1) if len(times) > 1 else np.zeros(len(at), int)
    lower = np.maximum(upper - 1, 0)
    span = times[upper] - times[lower]
    alpha = np.divide(at - times[lower], span, out=np.zeros(len(at)), where=span > 0).clip(0, 1)
    alpha = torch.as_tensor(alpha, dtype=latents.dtype)[:, None, None]
    return torch.lerp(latents[lower], latents[upper], alpha)


@dataclass
class VideoFrame:
    """One frame of a sound-driven video."""

    index: int
    time: float  # seconds from the start of the track
    image: torch.Tensor  # [3, H, W] in [-1, 1], on the CPU
    latent: torch.Tensor  # [num_ws, w_dim] the W+ latent it was rendered from


@dataclass
class VideoEdit:
    """A sound-driven video: the optimised keyframes and a lazy stream of frames (iterate it, or `frames()`).

    Nothing is rendered until frames are asked for; then RENDER_BATCH at a time, so memory does not grow
    with the track's length.
    """

    audio: Path  # the track; write_video muxes it
    fps: float
    duration: float  # seconds of the track
    keyframe_times: np.ndarray  # [K]
    keyframe_latents: torch.Tensor  # [K, num_ws, w_dim] after strength and loudness, on the CPU
    source_latent: torch.Tensor  # [num_ws, w_dim]
    audible: np.ndarray  # [K] bool: the keyframe's window had a sound (else it is pinned at the source)
    levels_dbfs: np.ndarray  # [K]
    strengths: np.ndarray  # [K] strength applied to each keyframe (strength x loudness scale; 0 where silent)
    losses: dict[str, np.ndarray]  # "total" and every term -> [steps, K]; {} when a direction ran without optimisation
    settings: dict
    render: Callable[..., torch.Tensor] = field(repr=False, default=None)  # W+ [N, ...] (, transforms) -> images [N, 3, H, W]
    camera: Optional["Camera"] = None  # a StyleGAN3 generator's moving input transform (sgsim.camera), None = still

    @property
    def frame_count(self) -> int:
        return frame_count(self.duration, self.fps)

    def __len__(self) -> int:
        return self.frame_count

    def frame_latents(self, indices: np.ndarray) -> torch.Tensor:
        """W+ latents of frames `indices` (frame i shows time i / fps)."""
        return interpolate(self.keyframe_times, self.keyframe_latents, np.asarray(indices) / self.fps)

    def frames(self, start: int = 0, stop: Optional[int] = None, progress: Optional[Progress] = None) -> Iterator[VideoFrame]:
        """Frames start..stop-1 (default all) in order, rendered RENDER_BATCH at a time."""
        stop = self.frame_count if stop is None else min(stop, self.frame_count)
        for first in range(start, stop, RENDER_BATCH):
            indices = np.arange(first, min(first + RENDER_BATCH, stop))
            latents = self.frame_latents(indices)
            images = self.render(latents) if self.camera is None else self.render(latents, self.camera.transforms(indices / self.fps))
            for i, index in enumerate(indices):
                yield VideoFrame(int(index), float(index / self.fps), images[i], latents[i])
            if progress is not None:
                progress("render", int(indices[-1]) + 1 - start, stop - start)

    def __iter__(self) -> Iterator[VideoFrame]:
        return self.frames()


def write_video(path: Union[str, Path], video: VideoEdit, progress: Optional[Progress] = None) -> int:
    """Encode `video` as H.264 with its track muxed as AAC (sgsim.outputs.write_mp4), streaming frames; atomic.
    Returns the number of frames written."""
    from sgsim.outputs import to_uint8, write_mp4

    return write_mp4(path, (to_uint8(frame.image)[0] for frame in video.frames(progress=progress)), video.fps, audio=video.audio)


def make_video(
    editor: "Editor",
    audio: Union[str, Path],
    source: "AnySource",
    *,
    fps: float = DEFAULT_FPS,
    keyframe_every: float = DEFAULT_KEYFRAME_EVERY,
    window: Optional[float] = None,
    strength: float = 1.0,
    smoothness: float = DEFAULT_SMOOTHNESS,
    loudness: bool = True,
    steps: int = DEFAULT_STEPS,
    lr: float = 0.1,
    weights: Optional[Mapping[str, float]] = None,
    layers=None,
    seed: int = 0,
    invert_steps: int = 1000,
    class_index: Optional[int] = None,
    noise: Optional[dict[str, torch.Tensor]] = None,
    precision: Optional[str] = None,
    adaptive_layer_masking: bool = False,
    direction: Optional["SoundDirection"] = None,
    progress: Optional[Progress] = None,
    keyframe_batch: Optional[int] = DEFAULT_KEYFRAME_BATCH,
    warm_steps: int = DEFAULT_WARM_STEPS,
    work_resolution: Union[str, int, None] = None,
) -> VideoEdit:
    """Editor.video: see its docstring."""
    from sgsim.worlds import video_window

    editor.require_encoders("make a sound-driven video")
    window = video_window(window, editor.world)
    check_timing(fps, keyframe_every, window)
    check_video_steps(steps)
    if direction is None or steps != 0:  # a direction alone may skip the optimisation
        check_settings(steps, lr, "weighted", [strength])
    check_strengths([strength])
    if direction is not None:
        from sgsim.editing.directions import check_generator

        check_generator(direction, editor.generator, editor.checksum("generator"))
    if keyframe_batch is not None and (int(keyframe_batch) != keyframe_batch or keyframe_batch < 1):
        raise SgsimError(f"keyframe_batch must be a whole number >= 1 (or None: all at once), got {keyframe_batch}")
    if int(warm_steps) != warm_steps or warm_steps < 1:
        raise SgsimError(f"warm_steps must be a whole number >= 1, got {warm_steps}")
    warm_steps = min(int(warm_steps), steps) if steps > 0 else int(warm_steps)  # a warm start never needs more steps than a cold one
    run = editor.prepare_run(precision, {**(weights or {}), "smoothness": smoothness}, adaptive_layer_masking=adaptive_layer_masking)
    weights = run.weights
    working = choose_work_resolution(work_resolution, editor.generator, editor.device)
    audio = Path(audio)
    duration = check_long_enough(audio)
    times = keyframe_times(duration, keyframe_every)
    targets = embed_keyframes(audio, times, editor.audio_encoder, window, progress)  # a bad track fails before inversion
    w_source, fitted_noise = editor.source_start(source, seed, invert_steps, class_index)[:2]
    noise = {name: torch.as_tensor(value).to(editor.device) for name, value in (noise or fitted_noise).items()}
    G = editor.generator
    start = w_source.expand(len(times), -1, -1)
    reach = np.zeros(len(times))
    if direction is not None:  # each keyframe starts moved along the direction as far as its window sounds like its target
        reach = (targets.directions @ direction.target.float()).clamp(min=0).numpy() * targets.audible
        start = start + torch.as_tensor(reach, dtype=torch.float32, device=editor.device)[:, None, None] * direction.offset.to(editor.device)
    losses: dict[str, np.ndarray] = {}
    optimised = start
    if steps > 0:
        batches = math.ceil(len(times) / (keyframe_batch or len(times)))
        total = steps + (batches - 1) * warm_steps
        counter = iter(range(1, total + 1))
        on_step = None if progress is None else (lambda: progress("optimise", next(counter), total))
        optimised, losses = optimise_keyframes(
            editor, run, start, targets, steps=steps, warm_steps=warm_steps, batch=keyframe_batch,
            layers=working_layers(G, working.used, layers), on_step=on_step, noise=noise, lr=lr, work_resolution=working.used)
    strengths = np.where(targets.audible, loudness_strengths(targets.levels_dbfs, [strength], loudness)[:, 0].numpy(), 0.0)
    w_src = w_source.cpu()
    keyframes = move_by(w_src, optimised.cpu() - w_src, torch.as_tensor(strengths, dtype=torch.float32)[:, None])[:, 0]

    def render(latents: torch.Tensor, transforms: Optional[torch.Tensor] = None) -> torch.Tensor:
        with generator_lock(G), swapped_noise(G, noise):  # rendered later, frame by frame: this call's turn too
            return editor.render(latents, transforms)

    return VideoEdit(
        audio=audio, fps=float(fps), duration=duration, keyframe_times=times, keyframe_latents=keyframes,
        source_latent=w_src, audible=targets.audible, levels_dbfs=targets.levels_dbfs, strengths=strengths,
        losses=losses, render=render,
        settings={
            "fps": float(fps), "keyframe_every": float(keyframe_every), "window": float(window), "strength": float(strength),
            "smoothness": weights["smoothness"], "loudness": bool(loudness), "quiet_window_dbfs": QUIET_WINDOW_DBFS,
            "steps": steps, "lr": lr, "weights": weights, "seed": seed, "layers": None if layers is None else sorted({int(i) for i in layers}),
            "keyframe_batch": keyframe_batch, "warm_steps": warm_steps, "work_resolution": asdict(working),
            "class_index": class_index, "precision": run.precision.name, "precision_reason": run.precision.reason, "device": str(editor.device), "preset_name": editor.preset_name,
            "interpolation": "linear in W+", "silent_keyframes": "pinned at the source",
            "direction": None if direction is None else {**direction.record(), "reach": reach.tolist()},
        },
    )
