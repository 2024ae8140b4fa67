"""Edits in the shapes world scored by its judge instead of CLIP: which seeds to edit, how many took what the target
names, and how many kept what it does not (the other attribute and the position).

scripts/bench_world.py (the issue's targets and the curves that chose the world's defaults), `sgsim reproduce
world-shapes` and the tests of the shipped world all measure through this module, so they count the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional, Sequence

import numpy as np
import torch

from sgsim.errors import SgsimError
from sgsim.settings import EditSettings
from sgsim.worlds.shapes import COLOURS, SHAPES, Judgement, clip_reads, judge

if TYPE_CHECKING:
    from sgsim.editing.stopping import FlatteningRule

POSITION_PIXELS = 3.0  # "stays within a few pixels": the largest centroid move, in pixels, that keeps the position


class TooFewSources(SgsimError):
    """The generator rarely draws a clean picture that differs from an aim: there is nothing to edit toward it."""


@dataclass(frozen=True)
class Aim:
    """What an edit should show: a colour, a shape or both (None: the edit should keep that attribute)."""

    colour: Optional[str] = None
    shape: Optional[str] = None

    @classmethod
    def of_words(cls, *texts: str) -> "Aim":
        """The colour and shape named in `texts` ("blue", "a triangle", "a blue circle"); one of each at most."""
        words = " ".join(texts).lower().split()
        colours = [w for w in words if w in COLOURS]
        shapes = [w for w in words if w in SHAPES]
        if len(set(colours)) > 1 or len(set(shapes)) > 1 or not (colours or shapes):
            raise ValueError(f"{' / '.join(texts)!r} should name one colour, one shape or one of each")
        return cls(colours[0] if colours else None, shapes[0] if shapes else None)

    @property
    def label(self) -> str:
        return " ".join(word for word in (self.colour, self.shape) if word)


def source_seeds(G, aim: Aim, count: int, first: int = 0, truncation: float = EditSettings.truncation, batch: int = 200) -> list[int]:
    """The first `count` seeds from `first` whose (truncated) picture the judge reads as clean and which differ from
    `aim` in every attribute it names: the pictures an edit toward `aim` has something to change in."""
    from sgsim.editing.sources import seed_latent

    chosen: list[int] = []
    start = first
    while len(chosen) < count:
        seeds = list(range(start, start + batch))
        with torch.no_grad():
            images = G.synthesis(torch.stack([seed_latent(G, s, truncation) for s in seeds]), noise_mode="const")
        verdict = judge(images)
        for index, seed in enumerate(seeds):
            differs = ((aim.colour is None or COLOURS[verdict.colour[index]] != aim.colour)
                       and (aim.shape is None or SHAPES[verdict.shape[index]] != aim.shape))
            if verdict.clean[index] and differs:
                chosen.append(seed)
        start += batch
        if start - first > 100 * count + 10 * batch:
            raise TooFewSources(f"the generator gives too few clean pictures to pick {count} sources for {aim.label!r}")
    return chosen[:count]


def position_kept(before: np.ndarray, after: np.ndarray, resolution: int) -> np.ndarray:
    """Whether each centroid (fractions of the picture) moved at most POSITION_PIXELS; a vanished shape did not keep it."""
    moved = np.linalg.norm((after - before) * resolution, axis=-1)
    return np.nan_to_num(moved, nan=np.inf) <= POSITION_PIXELS


def score(before: Judgement, after: Judgement, aim: Aim, resolution: int) -> dict:
    """Per-edit booleans and their rates: `reached` (every named attribute shown), `kept_colour` / `kept_shape` (an
    attribute the aim does not name unchanged), `kept_position` (centroid within POSITION_PIXELS) and `success`
    (reached, the unnamed attribute kept, position kept)."""
    reached = np.ones(len(after.colour), bool)
    kept = np.ones(len(after.colour), bool)
    per: dict[str, np.ndarray] = {}
    for attribute, names in (("colour", COLOURS), ("shape", SHAPES)):
        wanted = getattr(aim, attribute)
        now, was = getattr(after, attribute), getattr(before, attribute)
        if wanted is None:
            per[f"kept_{attribute}"] = now == was
            kept &= per[f"kept_{attribute}"]
        else:
            per[f"{attribute}_reached"] = now == names.index(wanted)
            reached &= per[f"{attribute}_reached"]
    per["kept_position"] = position_kept(before.centroid, after.centroid, resolution)
    per["reached"] = reached
    per["success"] = reached & kept & per["kept_position"]
    return {"count": int(len(reached)), **{name: float(values.mean()) for name, values in per.items()},
            "per_edit": {name: values.tolist() for name, values in per.items()}}


def seed_latents(editor, seeds: Sequence[int], truncation: float) -> torch.Tensor:
    """W+ [N, num_ws, w_dim] of the seeds, as `sgsim edit --seed` starts from them."""
    from sgsim.editing.sources import SeedSource

    return torch.stack([editor.source_latent(SeedSource(int(seed)), truncation=truncation) for seed in seeds])


@dataclass
class EditedSeeds:
    """What edit_seeds made: per job its (source, edited) pictures [N, 3, R, R], and the steps each edit ran."""

    pictures: list[tuple[torch.Tensor, torch.Tensor]]
    steps_used: list[list[int]]
    losses: np.ndarray  # [steps run, edits]: every edit's total loss at every step, the jobs' edits in order


def edit_seeds(editor, jobs: Sequence[tuple[object, Sequence[int]]], settings: EditSettings = EditSettings(),
               callback: Optional[Callable[..., None]] = None, stop: Optional[FlatteningRule] = None) -> EditedSeeds:
    """Per (Target, seeds) job, the (source, edited) pictures [N, 3, R, R] of `sgsim edit --seed S` toward the target
    for every seed, at strength 1; all jobs in one batched optimisation (Editor.optimise: each row as if alone, steps
    "auto" included). `callback(step, losses, latents)` sees the latents every step renders (the jobs' edits in order).
    `stop`: a flattening rule in place of the one settings.steps names (benchmarks of candidate rules)."""
    from sgsim.editing.optimise import choose_work_resolution
    from sgsim.editing.stopping import steps_and_rule
    from sgsim.editing.targets import embed_target

    run = editor.prepare_run(settings.precision, settings.loss_weights, settings.lambda_latent, settings.lambda_id,
                             adaptive_layer_masking=settings.adaptive_layer_masking)
    working = choose_work_resolution(settings.work_resolution, editor.generator, editor.device)
    aims = torch.cat([embed_target(target, editor.audio_encoder, editor.clip).mixed(target.weight)[None].expand(len(seeds), -1)
                      for target, seeds in jobs])
    sources = seed_latents(editor, [seed for _, seeds in jobs for seed in seeds], settings.truncation)
    steps, rule = (stop.max_steps, stop) if stop is not None else steps_and_rule(settings.steps)
    optimised = editor.optimise(run, sources, aims, steps=steps, lr=settings.lr, work_resolution=working.used, stop=rule,
                                callback=callback, callback_values=("latents",) if callback is not None else ())
    sizes = [len(seeds) for _, seeds in jobs]
    used = np.split(np.asarray(optimised.steps_used), np.cumsum(sizes)[:-1])
    return EditedSeeds(list(zip(editor.render(sources).split(sizes), editor.render(optimised.latents).split(sizes))),
                       [part.tolist() for part in used], optimised.losses["total"])


def clip_reached(clip, pictures: torch.Tensor, aim: Aim) -> float:
    """The share of `pictures` in which the edit's own CLIP, read zero-shot, sees every attribute the aim names: what
    the optimisation was steered by, beside what the judge sees."""
    colour, shape = clip_reads(clip, pictures)
    hit = torch.ones(len(pictures), dtype=torch.bool)
    if aim.colour is not None:
        hit &= colour == COLOURS.index(aim.colour)
    if aim.shape is not None:
        hit &= shape == SHAPES.index(aim.shape)
    return float(hit.float().mean())


def judged_edits(editor, jobs: Sequence[tuple[object, Aim, Sequence[int]]], settings: EditSettings = EditSettings()) -> list[dict]:
    """`score` per (Target, aim, seeds) job, with the mean steps its edits ran and `clip_reached`: how many of its
    seeds' edits toward the target show the aim and keep the rest; the jobs optimised together (edit_seeds)."""
    edited = edit_seeds(editor, [(target, seeds) for target, _, seeds in jobs], settings)
    return [{**score(judge(before), judge(after), aim, before.shape[-1]), "steps_used": float(np.mean(steps)),
             "clip_reached": clip_reached(editor.clip, after, aim)}
            for (before, after), steps, (_, aim, _) in zip(edited.pictures, edited.steps_used, jobs)]


def judged_direction(editor, direction, aim: Aim, seeds: Sequence[int], strength: float = 1.0) -> dict:
    """`score` of a learned direction applied at `strength` (sgsim apply) to seeds it never saw, and `clip_reached`."""
    from sgsim.editing.sources import SeedSource

    applied = [editor.apply(direction, SeedSource(int(seed)), strengths=(strength,)) for seed in seeds]
    before = editor.render(torch.stack([result.source_latent for result in applied]))
    after = torch.cat([result.images for result in applied])
    return {**score(judge(before), judge(after), aim, before.shape[-1]), "clip_reached": clip_reached(editor.clip, after, aim)}


def _hears_a_word(keyframe: float, duration: float, window: float, words: Sequence[dict]) -> bool:
    """Whether the window sgsim video embeds for a keyframe at this time (kept inside the track) touches a word."""
    from sgsim.editing.video import window_span

    offset, length = window_span(keyframe, duration, window)
    return any(offset <= word["end"] and word["start"] <= offset + length for word in words)


def judged_video(frames: Sequence[tuple[float, torch.Tensor]], source: torch.Tensor, words: Sequence[dict], lag: float,
                 window: float, duration: float) -> dict:
    """How a video follows a spoken colour sequence: for each word, the share of frames from its start + `lag` to its
    end + `lag` whose shape has that word's colour; and the share of pause frames (both keyframes around them, `lag`
    apart, hear no word in their `window`) whose colour and centroid stay at the source's.
    `frames`: (time s, picture [3, R, R]) of a `duration`-second track."""
    times = np.array([time for time, _ in frames])
    verdict = judge(torch.stack([image for _, image in frames]))
    start = judge(source[None])
    resolution = source.shape[-1]
    per_word = {}
    for word in words:
        inside = (times >= word["start"] + lag) & (times <= word["end"] + lag)
        hits = verdict.colour[inside] == COLOURS.index(word["word"])
        per_word[f"{word['word']}@{word['start']:.1f}s"] = {"frames": int(inside.sum()), "coloured": float(hits.mean()) if inside.any() else None}
    before = np.floor(times / lag + 1e-9) * lag
    away = np.array([not any(_hears_a_word(k, duration, window, words) for k in (first, min(first + lag, duration)))
                     for first in before], bool)
    at_source = (verdict.colour[away] == start.colour[0]) & position_kept(start.centroid, verdict.centroid[away], resolution)
    coloured = [entry["coloured"] for entry in per_word.values() if entry["coloured"] is not None]
    return {"words": per_word, "word_frames_coloured": float(np.mean(coloured)) if coloured else None,
            "pause_frames": int(away.sum()), "pause_frames_at_source": float(at_source.mean()) if away.any() else None}
