"""`sgsim apply`: learned sound directions applied to seeds, latents or photos, one generator pass per image."""

from __future__ import annotations

import time
from pathlib import Path
import click

from sgsim.cli.options import (SEED_MAX, command_line, device_option, edit_options, fresh_folder, out_option, parse_seeds,
                               safe_stem, setting_option, unique, world_option)
from sgsim.settings import PHOTO_SETTINGS, EditSettings


def learned_generator(directions) -> str:
    """The generator the directions were learned on when it is a manifest name; a file the record names is loaded
    only when the user passes it as --generator (the record is data from elsewhere, not a confirmed path)."""
    from checkpoints import entries
    from sgsim.editing.directions import shown

    name = directions[0].generator.get("name")
    if isinstance(name, str) and name in {item.name for item in entries() if item.kind == "generator"}:
        return name
    raise click.UsageError(f"direction {directions[0].name!r} was learned on {shown(name)}, not a manifest name; "
                           f"pass --generator NAME_OR_FILE (a file a direction records is loaded only when you name it)")


def _sources(seeds: list[int], latents: tuple[str, ...], images: tuple[Path, ...],
             settings: EditSettings) -> list[tuple[str, object]]:
    """(folder name, source) per source, checked: seeds as seedNNNN, files by their stem, made unique; photos
    carry the settings' photo choices (method, encoder, alignment)."""
    from sgsim.editing.sources import ImageSource, LatentSource
    from sgsim.images import check_image
    from sgsim.latents import read_latent_file, split_latent_spec

    found: list[tuple[str, object]] = [(f"seed{seed:04d}", seed) for seed in seeds]
    for spec in latents:
        stored = read_latent_file(spec)
        found.append((safe_stem(split_latent_spec(spec)[0].stem, "latent"), LatentSource(stored.latent, stored.noise)))
    for image in images:
        check_image(image)
        found.append((safe_stem(image.stem, "image"), ImageSource(image).with_settings(settings)))
    names = unique(name for name, _ in found)
    return [(name, source) for name, (_, source) in zip(names, found)]


@click.command("apply")
@click.option("--direction", "direction_specs", multiple=True, required=True, metavar="FILE[:NAME]",
              help="A .sgdir from sgsim direction (FILE:NAME picks one of a library file); repeat to add several.")
@click.option("--weight", "direction_weights", multiple=True, type=float, help="Weight of each --direction, in order (default 1 each).")
@click.option("--seed", "seed_list", type=click.IntRange(0, SEED_MAX), multiple=True, help="Source: the image of this seed (repeat).")
@click.option("--seeds", "seed_ranges", default=None, metavar="LIST", help="Sources: seeds and ranges, e.g. 0-3,42.")
@click.option("--latent", "latents", multiple=True, metavar="FILE[:KEY]", help="Source: a W or W+ latent .npz (repeat).")
@click.option("--image", "images", multiple=True, type=click.Path(path_type=Path), help="Source: a photo, inverted first (repeat).")
@click.option("--class", "class_index", type=click.IntRange(min=0), default=None, help="Class of the seed images (conditional generators only).")
@setting_option("strengths")
@setting_option("generator", default=None, help="Generator: manifest name or checkpoint path (default: the one the direction was learned on).")
@world_option
@edit_options(names=PHOTO_SETTINGS)
@device_option
@out_option(required=False, default_help=" (default: a new folder out/<direction>-apply)")
def apply_command(direction_specs, direction_weights, seed_list, seed_ranges, latents, images, class_index, strengths, generator,
                  world, settings: EditSettings, device, out, overwrite) -> None:
    """Apply learned sound directions to images instantly: one generator pass per image and strength.

    Writes <source>/source.png and <source>/<direction>_s<strength>.png per source (seedNNNN or the file's
    stem), comparison.png, latents.npz ('sources', 'applied' [source, strength], 'strengths', 'offset') and run.json.
    """
    import torch

    from sgsim import components
    from sgsim.atomic import staged_output_dir
    from sgsim.devices import parse_device
    from sgsim.editing import Editor
    from sgsim.editing.folder import directions_title, strength_caption
    from sgsim.latents import write_latent_file
    from sgsim.outputs import GridRow, is_run_folder, run_record, tile_size, weights_record, write_grid_rows, write_json, write_png

    from sgsim.editing.directions import SoundDirection, check_weights
    from sgsim.editing.sources import ImageSource
    from sgsim.settings import check_strengths

    directions = [SoundDirection.from_spec(spec) for spec in direction_specs]
    if direction_weights and len(direction_weights) != len(directions):
        raise click.UsageError(f"{len(direction_weights)} --weight for {len(directions)} --direction: give one per direction, or none")
    weights = check_weights(direction_weights or None, len(directions))
    check_strengths(strengths)
    seeds = list(dict.fromkeys([*(parse_seeds(seed_ranges) if seed_ranges else []), *seed_list]))
    if class_index is not None and not seeds:
        raise click.UsageError("--class picks the label of a seed source; a latent or an image has none, leave out --class")
    sources = _sources(seeds, latents, images, settings)
    if not sources:
        raise click.UsageError("pass the images to edit: --seed N, --seeds LIST, --latent FILE or --image FILE")
    generator = generator or learned_generator(directions)
    device = parse_device(device)
    label = "+".join(unique(d.name for d in directions))  # for file names; the grid says the weights too
    title = directions_title([d.name for d in directions], weights)
    out = out if out is not None else fresh_folder(f"{safe_stem(label, 'direction')}-apply")
    with staged_output_dir(out, overwrite, is_run_folder) as staging:  # an unusable --out fails here, before the generator loads
        started = time.perf_counter()
        loaded = components.load_generator(generator, device)
        editor = Editor(loaded.component, None, None, device=device, weight_files={"generator": loaded.weights})
        ready = time.perf_counter()
        outputs, rows, source_latents, applied_latents = [], [], [], []
        for name, source in sources:
            applied = editor.apply(directions, source, strengths=[0.0, *strengths], weights=weights, class_index=class_index,
                                   invert_steps=settings.invert_steps)
            write_png(staging / name / "source.png", applied.images[0])
            outputs.append(f"{name}/source.png")
            for strength, image in zip(strengths, applied.images[1:]):
                outputs.append(f"{name}/{label}_s{strength:g}.png")
                write_png(staging / outputs[-1], image)
            rows.append(GridRow(list(applied.images), ["source", *(strength_caption(s, s) for s in strengths)], f"{name}: {title}"))
            source_latents.append(applied.source_latent)
            applied_latents.append(applied.latents[1:])
        applied_at = time.perf_counter()
        write_grid_rows(staging / "comparison.png", rows, tile_size(applied.images.shape[-2]))  # a row per source
        write_latent_file(staging / "latents.npz", sources=torch.stack(source_latents), applied=torch.stack(applied_latents),
                          strengths=torch.tensor(strengths), offset=applied.offset)
        outputs += ["comparison.png", "latents.npz"]
        write_json(staging / "run.json", run_record(
            "apply", command_line(),
            directions=[{"spec": spec, "name": d.name, "weight": w, "learned_on": d.generator.get("name"), "sound": d.sound, "text": d.text}
                        for spec, d, w in zip(direction_specs, directions, weights)],
            sources=[{"folder": name, "seed": source if isinstance(source, int) else None,
                      "image": str(source.image) if isinstance(source, ImageSource) else None} for name, source in sources],
            latents=list(latents), strengths=strengths, class_index=class_index, generator=generator, world=world, device=str(device),
            inversions=editor.inversions, weights=weights_record(editor.weight_files),
            timings_s={"load": ready - started, "apply": applied_at - ready, "write": time.perf_counter() - applied_at},
            outputs=outputs + ["run.json"],
        ))
    click.echo(f"wrote {len(outputs) + 1} files to {out}")
