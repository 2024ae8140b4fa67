"""The shapes world's edit checks: each kind of edit the world must get right, its goal as data, and the runner that
measures it with the judge (sgsim.worlds.judged). scripts/bench_world.py prints them at full counts; the tests of the
shipped world run them at reduced counts, so a flipped sign or a misaligned encoder fails the suite.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

from sgsim.editing.video_settings import DEFAULT_KEYFRAME_EVERY, DEFAULT_WINDOW
from sgsim.settings import EditSettings
from sgsim.worlds.judged import Aim, TooFewSources, judged_direction, judged_edits, judged_video, source_seeds
from sgsim.worlds.shapes import COLOURS, SHAPES

EDIT_SEEDS_FROM = 10_000  # sources of the checks: seeds the direction learning (and the build's metrics) never draw
LEARN_SEEDS_FROM = 20_000  # sources a direction is learned over
# In a world's audio folder (scripts/ship_world.py writes them): one held-out voice saying each word, and the spoken
# sequence with its word spans.
WORD_FILE, SEQUENCE_FILE, SEQUENCE_SPANS = "{}.flac", "sequence.flac", "sequence.json"


@dataclass(frozen=True)
class Goal:
    """A check's targets: the least share of edits that must reach the aim, and keep the unnamed attribute and the
    position (None: not asked; a check without a target is measured for comparison)."""

    reached: Optional[float]
    kept: Optional[float] = None


# The targets per check (README "The shapes world" prints them beside what the shipped world reaches).
GOALS = {
    "colour word (sound)": Goal(0.80, 0.90),
    "colour word (text)": Goal(None),  # the same edits toward CLIP's text of the word: what the encoder costs
    "shape word (sound)": Goal(0.70, 0.85),
    "colour and shape (text)": Goal(0.70),
    "colour sound + shape text": Goal(0.70),
    "direction, strength 1, held-out seeds": Goal(0.70, 0.90),
}


def _split(count: int, parts: int) -> list[int]:
    """`count` edits spread over `parts` targets as evenly as whole numbers allow."""
    return [count // parts + (1 if i < count % parts else 0) for i in range(parts)]


def _pool(results: Sequence[dict]) -> dict:
    """Rates of several judged_* results pooled by their counts."""
    total = sum(r["count"] for r in results)
    names = sorted({name for r in results for name in r if name not in ("count", "per_edit", "no_sources")})
    return {"count": total, **{name: sum(r.get(name, math.nan) * r["count"] for r in results) / total for name in names}}


def kept_rate(result: dict) -> float:
    """The share of edits that kept the attribute the aim leaves alone (colour or shape; both when it names neither)."""
    kept = [result[name] for name in ("kept_colour", "kept_shape") if name in result]
    return min(kept) if kept else math.nan


def _edits(editor, count: int, settings: EditSettings, pairs: Sequence[tuple[object, Aim]]) -> dict:
    """Pooled judged_edits over `pairs` (Target, aim), `count` edits shared between them, each on its own sources; an
    aim the generator has too few sources for is left out and named under "no_sources"."""
    jobs, missing = [], []
    for (target, aim), share in zip(pairs, _split(count, len(pairs))):
        try:
            jobs.append((target, aim, source_seeds(editor.generator, aim, share, EDIT_SEEDS_FROM, settings.truncation)))
        except TooFewSources:
            missing.append(aim.label)
    pooled = _pool(judged_edits(editor, jobs, settings)) if jobs else {"count": 0}
    return {**pooled, "no_sources": missing}


def run_checks(editor, audio: Path, count: int = 50, settings: EditSettings = EditSettings(), learn_count: int = 16,
               names: Optional[Sequence[str]] = None) -> dict[str, dict]:
    """Each check of GOALS (or those in `names`) with `count` edits, the world's sounds read from the folder `audio`
    (WORD_FILE); returns name -> pooled rates (reached, kept_*, success)."""
    from sgsim.editing import Target

    def sound(word: str) -> Path:
        return audio / WORD_FILE.format(word)

    combos = [(COLOURS[i], SHAPES[i % len(SHAPES)]) for i in range(len(COLOURS))]
    plans: dict[str, Callable[[], dict]] = {
        "colour word (sound)": lambda: _edits(editor, count, settings, [(Target(audio=sound(c)), Aim(colour=c)) for c in COLOURS]),
        "colour word (text)": lambda: _edits(editor, count, settings, [(Target(text=c), Aim(colour=c)) for c in COLOURS]),
        "shape word (sound)": lambda: _edits(editor, count, settings, [(Target(audio=sound(s)), Aim(shape=s)) for s in SHAPES]),
        "colour and shape (text)": lambda: _edits(editor, count, settings, [(Target(text=f"a {c} {s}"), Aim(c, s)) for c, s in combos]),
        "colour sound + shape text": lambda: _edits(editor, count, settings, [
            (Target(audio=sound(c), text=f"a {s}"), Aim(c, s)) for c, s in combos]),
        "direction, strength 1, held-out seeds": lambda: direction_check(
            editor, colour_directions(editor, audio, settings, learn_count), count),
    }
    return {name: plans[name]() for name in (names or GOALS)}


def colour_directions(editor, audio: Path, settings: EditSettings = EditSettings(), learn_count: int = 16) -> dict:
    """colour -> SoundDirection toward the held-out voice saying it, all four learned together (sgsim direction) over
    the same `learn_count` clean seeds, seeds the checks never edit."""
    from sgsim.editing import Target
    from sgsim.editing.sources import SeedSource

    learn = source_seeds(editor.generator, Aim(), learn_count, LEARN_SEEDS_FROM, settings.truncation)
    learned = editor.learn_directions([Target(audio=audio / WORD_FILE.format(colour)) for colour in COLOURS],
                                      [SeedSource(s) for s in learn], settings, holdout=0)
    return dict(zip(COLOURS, learned))


def direction_check(editor, directions: dict, count: int, strength: float = 1.0) -> dict:
    """Pooled judged_direction of colour_directions at `strength`, `count` held-out seeds shared between the colours."""
    results = []
    for (colour, direction), share in zip(directions.items(), _split(count, len(directions))):
        aim = Aim(colour=colour)
        results.append(judged_direction(editor, direction, aim, source_seeds(editor.generator, aim, share, EDIT_SEEDS_FROM), strength))
    return _pool(results)


def video_check(editor, audio: Path, seeds: Sequence[int], window: float = DEFAULT_WINDOW, keyframe_every: float = DEFAULT_KEYFRAME_EVERY,
                **video) -> dict:
    """sgsim video on the world's spoken colour sequence from each seed, judged frame by frame (judged_video), pooled
    over the seeds; the lag is one keyframe interval."""
    from sgsim.editing.sources import SeedSource

    spans = json.loads((audio / SEQUENCE_SPANS).read_text())
    results = []
    for seed in seeds:
        clip = editor.video(audio / SEQUENCE_FILE, SeedSource(int(seed)), window=window, keyframe_every=keyframe_every, **video)
        source = editor.render(clip.source_latent[None])[0]
        frames = [(frame.time, frame.image) for frame in clip]
        results.append(judged_video(frames, source, spans, keyframe_every, window, clip.duration))
    words = [r["word_frames_coloured"] for r in results if r["word_frames_coloured"] is not None]
    pauses = [r["pause_frames_at_source"] for r in results if r["pause_frames_at_source"] is not None]
    return {"videos": len(results), "word_frames_coloured": sum(words) / len(words) if words else None,
            "pause_frames_at_source": sum(pauses) / len(pauses) if pauses else None, "per_video": results}
