"""An edit's output folder, written the same way by `sgsim edit`, `EditResult.save` and batch jobs: the images, the
labelled comparison grid, the latents, the optimisation video and run.json."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Mapping, Optional, Sequence, Union

import numpy as np

from sgsim.errors import SgsimError
from sgsim.outputs import (RUN_RECORD, VIDEO_FORMATS, VIDEO_FPS, GridRow, grid_picture, run_record, safe_stem, tile_size, unique, write_gif,
                           write_grid_rows, write_json, write_mp4, write_png)

if TYPE_CHECKING:
    from sgsim.editing.results import EditResult
    from sgsim.editing.targets import Target

VIDEO_TILE_PX = 256  # side of each tile of the optimisation video
COMPARISON = "comparison.png"


def target_stems(targets: Sequence["Target"]) -> list[str]:
    """A unique, file-name-safe stem per target: the sound's file stem, else the text ('a_snowy_mountain')."""
    stems = []
    for target in targets:
        if isinstance(target.audio, (str, os.PathLike)):
            stems.append(safe_stem(Path(target.audio).stem, "sound"))
        elif target.audio is not None:
            stems.append("waveform")
        else:
            stems.append(safe_stem(target.text or "", "text"))
    return unique(stems)


def target_title(target: "Target", mix: str = "weighted") -> str:
    """A comparison row's title: what the row aimed at, the text prompt quoted and how it was mixed in."""
    if target.audio is None:
        return f"“{target.text}”"
    if not target.text:
        return target.label
    how = "coarse layers from the sound, fine from" if mix == "layers" else "+"
    weight = f" ×{target.weight:g}" if mix != "layers" and target.weight != 1 else ""
    return f"{target.label} {how} “{target.text}”{weight}"


def directions_title(names: Sequence[str], weights: Sequence[float]) -> str:
    """What an `apply` row adds to its source: the directions as the weighted sum they are ("raining + 0.5·fire")."""
    return " + ".join(name if weight == 1 else f"{weight:g}·{name}" for name, weight in zip(names, weights))


def strength_caption(asked: float, applied: float) -> str:
    """A tile's caption: the strength applied, after the one asked for when the loudness scale changed it."""
    if abs(applied - asked) <= 1e-6 * max(1.0, abs(asked)):
        return f"strength {asked:g}"
    return f"s{asked:g} → {applied:.3g}"


def _leading_tiles(result: "EditResult") -> tuple[list, list[str]]:
    """The tiles that start every row: the source, and for an image source the photo before its reconstruction."""
    if result.input_image is not None:
        return [result.input_image, result.source_image], ["input photo", "reconstruction"]
    return [result.source_image], ["source"]


def comparison_rows(result: "EditResult") -> list[GridRow]:
    """One row per target (titled with its sound, text or mix), a column per strength after the source tile(s)."""
    lead, lead_captions = _leading_tiles(result)
    asked = result.settings.get("strengths") or [float(s) for s in result.strengths[0]]
    mix = result.settings.get("mix", "weighted")
    rows = []
    for t, target in enumerate(result.targets):
        captions = [strength_caption(a, float(result.strengths[t, s])) for s, a in enumerate(asked)]
        title = target_title(target, mix)
        if result.settings.get("loudness_strength") and target.audio is not None:
            level, scale = result.settings["loudness_dbfs"][t], result.settings["loudness_scale"][t]
            title += f"  ·  {level:.0f} dBFS: strengths ×{scale:.2f}"
        rows.append(GridRow([*lead, *result.images[t]], [*lead_captions, *captions], title))
    return rows


def comparison_picture(result: "EditResult"):
    """The comparison grid as a Pillow picture (what comparison.png holds)."""
    return grid_picture(comparison_rows(result), tile_size(result.source_image.shape[-2]))


def optimisation_frames(result: "EditResult", tile: int = VIDEO_TILE_PX) -> Iterator[np.ndarray]:
    """The recorded optimisation snapshots as labelled pictures: the source, then one tile per guide, under a step counter."""
    every = result.settings.get("record_every") or 1
    steps = result.settings.get("steps")
    lead, lead_captions = _leading_tiles(result)
    side = tile_size(result.source_image.shape[-2], tile)
    for index, frame in enumerate(result.frames):
        step = steps if steps and index == len(result.frames) - 1 else index * every  # the last frame is the result
        title = f"step {step} of {steps}" if steps else f"step {step}"
        row = GridRow([*lead, *frame], [*lead_captions, *result.guides], title)
        yield np.asarray(grid_picture([row], side))


def final_losses(result: "EditResult") -> dict[str, dict[str, float]]:
    """Each guide's losses at the last step, keyed by its (made unique) name."""
    return {guide: {name: float(values[-1, g]) for name, values in result.losses.items()}
            for g, guide in enumerate(unique(result.guides, separator=" #"))}


def write_edit_folder(
    folder: Union[str, os.PathLike],
    result: "EditResult",
    video: Optional[str] = None,  # "mp4" or "gif": also write the optimisation video (needs result.frames)
    run: Optional[Mapping] = None,  # run.json fields (a run_record(...) head and what the caller knows); None: the API's own
) -> list[str]:
    """Write everything `sgsim edit` writes into `folder` (created if missing), each file atomically: input.png (an
    image source's photo as inverted), source.png,
    <target stem>_s<strength>.png per target and asked strength, comparison.png, latents.npz, optimisation.mp4/.gif
    with `video`, and run.json last (its `outputs` lists every file). Returns the file names written."""
    from sgsim.latents import write_latent_file

    if video is not None and video not in VIDEO_FORMATS:
        raise SgsimError(f"unknown video format {video!r}; choose one of {', '.join(VIDEO_FORMATS)}")
    if video is not None and not result.frames:
        raise SgsimError("no optimisation frames were recorded for the video; edit with record_every > 0 (the CLI's --save-video)")
    started = time.perf_counter()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    if result.input_image is not None:
        write_png(folder / "input.png", result.input_image)
        names.append("input.png")
    write_png(folder / "source.png", result.source_image)
    names.append("source.png")
    asked = result.settings.get("strengths") or [float(s) for s in result.strengths[0]]
    for t, stem in enumerate(target_stems(result.targets)):
        for s, strength in enumerate(asked):
            names.append(f"{stem}_s{strength:g}.png")
            write_png(folder / names[-1], result.images[t, s])
    write_grid_rows(folder / COMPARISON, comparison_rows(result), tile_size(result.source_image.shape[-2]))
    write_latent_file(folder / "latents.npz", noise=result.noise, source=result.source_latent, edited=result.edited_latents,
                      strengths=result.strengths, swept=result.latents)
    names += [COMPARISON, "latents.npz"]
    if video == "mp4":
        write_mp4(folder / "optimisation.mp4", optimisation_frames(result), VIDEO_FPS)
    elif video == "gif":
        write_gif(folder / "optimisation.gif", optimisation_frames(result), round(1000 / VIDEO_FPS))
    if video is not None:
        names.append(f"optimisation.{video}")
    record = dict(run) if run is not None else run_record("edit", **_hashed(result.networks))
    record.setdefault("targets", [{"audio": None if t.audio is None else str(t.audio) if isinstance(t.audio, (str, os.PathLike))
                                   else "waveform", "text": t.text} for t in result.targets])
    record.setdefault("settings", result.settings)
    record.setdefault("final_losses", final_losses(result))
    record["timings_s"] = {**record.get("timings_s", {}), "write": time.perf_counter() - started}
    record["outputs"] = names + [RUN_RECORD]
    write_json(folder / RUN_RECORD, record)
    return names + [RUN_RECORD]


def _hashed(networks: Mapping) -> dict:
    """An EditResult's record of its networks with each weights file's path and sha256 (hashed here, once, for the
    Python API's own run.json; a command's record brings its own)."""
    from sgsim.outputs import weights_record

    return {**networks, "weights": weights_record(networks["weights"])} if "weights" in networks else dict(networks)
