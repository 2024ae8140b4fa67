"""What an edit checks before any network loads: its source, its targets and where it writes; shared by `sgsim edit`,
`sgsim video`, `sgsim direction` and the batch jobs, so each refuses the same mistakes with the same line."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from sgsim.errors import UsageProblem
from sgsim.outputs import file_stems, fresh_folder, safe_stem
from sgsim.settings import INVERSION_SEED, EditSettings

# Seconds around a sound's centre checked for silence before any network loads (the editor checks the
# encoder's own window again; this catches the usual case, a silent file, in a second instead of a minute).
AUDIO_CHECK_SECONDS = 10.0


@dataclass
class EditPlan:
    """Everything an edit checked before loading a network: the source, the targets, where to write."""

    source: object  # sgsim.editing SeedSource, ImageSource, LatentSource (with the noise stored beside the latent) or MeanSource
    latent_key: Optional[str] = None  # which array of the latent file
    stems: list[str] = field(default_factory=list)  # file stem per target (the default folder is named after the first)
    device: object = None  # torch.device
    out: Optional[Path] = None
    given: dict = field(default_factory=dict)  # the source as named: seed (and its truncation), image, latent (FILE[:KEY]), class, free


def source_record(plan: EditPlan, inversion: Optional[dict]) -> dict:
    """run.json's `source` of an edit: as named, which array of a latent file, and for a photo how it was inverted
    (the Editor's record of it: alignment, method, steps and why, the reconstruction's distances; None otherwise)."""
    return {**plan.given, "latent_key": plan.latent_key, "inversion": inversion}


def check_sound(path: Path) -> None:
    """A missing, unreadable, empty, too short or silent sound fails now, naming the file, before the networks load."""
    from sgsim.audio import check_long_enough, check_not_silent, load_centred_window

    check_long_enough(path)
    check_not_silent(load_centred_window(path, None, True, AUDIO_CHECK_SECONDS), path)


def plan_edit(audio: Sequence[Path], text: Optional[str], image: Optional[Path], seed: Optional[int], latent: Optional[str],
              class_index: Optional[int], settings: EditSettings, device: Optional[str], out: Optional[Path]) -> EditPlan:
    """Check every flag and input that can be checked without the networks, cheapest first."""
    from sgsim.devices import choose_precision, parse_device
    from sgsim.editing.presets import choose_preset
    from sgsim.editing.sources import ImageSource, LatentSource, MeanSource, SeedSource

    sources = {"--seed": seed, "--image": image, "--latent": latent, "--free": True if settings.free else None}
    given = [flag for flag, value in sources.items() if value is not None]
    if len(given) != 1:
        raise UsageProblem(f"pass exactly one source, --seed N, --image FILE, --latent FILE[:KEY] or --free; got {len(given)} "
                           f"({', '.join(given) or 'none'})")
    if not audio and not text:
        raise UsageProblem("pass at least one --audio FILE, or a --text to edit toward")
    mix, generator = settings.mix, settings.generator
    if mix == "layers" and not (audio and text):
        raise UsageProblem("--mix layers mixes a sound-guided and a text-guided edit: every target needs both audio and text; "
                           "pass --audio and --text")
    if class_index is not None and seed is None:
        raise UsageProblem("--class picks the label of a --seed source; a latent, an image or --free has none, leave out --class")
    if settings.free and settings.adaptive_layer_masking:
        raise UsageProblem("--adaptive-layer-masking weighs the latent term, which --free turns off; pass one of them")
    plan = EditPlan(source=SeedSource(seed), device=parse_device(device))
    choose_precision(settings.precision, plan.device)
    if settings.preset is not None:
        choose_preset(settings.preset, generator)  # an unknown --preset fails here
    for path in audio:
        check_sound(path)
    if image is not None:
        from sgsim.alignment import import_faces_extra
        from sgsim.images import check_image

        check_image(image)
        plan.source, tag = ImageSource(image).with_settings(settings), safe_stem(image.stem, "image")
        # By name now (a missing encoder asked for, or the 'faces' extra, fails before any network loads); the
        # Editor plans again with the loaded file's metadata.
        if plan.source.plan(generator, settings.invert_steps, settings.refine_steps).align:
            import_faces_extra()
    elif latent is not None:
        from sgsim.latents import read_latent_file, split_latent_spec

        stored = read_latent_file(latent)
        plan.source, plan.latent_key = LatentSource(stored.latent, stored.noise), stored.key
        tag = safe_stem(split_latent_spec(latent)[0].stem, "latent")
    elif settings.free:
        plan.source, tag = MeanSource(), "free"
    else:
        tag = f"seed{seed}"
    plan.given = {"seed": seed, "image": image, "latent": latent, "class": class_index, "free": settings.free,
                  "truncation": settings.truncation if seed is not None else None}
    plan.stems = file_stems(list(audio)) if audio else [safe_stem(text, "text")]
    plan.out = out if out is not None else fresh_folder(f"{plan.stems[0]}-{tag}")
    return plan


def inverted_source(editor, plan: EditPlan, settings: EditSettings) -> tuple[object, Optional[object], Optional[dict]]:
    """The plan's source ready to edit: an image is inverted by the Editor (Editor.source_start: the photo policy
    decides alignment, method and steps from the loaded generator and the settings; a notice says which and why;
    seeded by INVERSION_SEED) and becomes a LatentSource with its noise. Returns (source, the photo as inverted
    [1, 3, R, R], the inversion's record), the last two None for other sources."""
    from sgsim.editing.sources import ImageSource, LatentSource

    if not isinstance(plan.source, ImageSource):
        return plan.source, None, None
    w_plus, noise, photo = editor.source_start(plan.source, INVERSION_SEED, settings.invert_steps, None, settings.refine_steps)
    return LatentSource(w_plus, noise), photo[None], editor.inversions[-1]
