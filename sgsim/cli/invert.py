"""`sgsim invert`: find the W+ latent of a photo with the generator, by a trained encoder (e4e), optimisation (ADA
projector, then a W+ refinement) or both, as the photo policy decides (sgsim.photo_inversion), for `sgsim edit --latent`."""

from __future__ import annotations

import time
from pathlib import Path

import click

from sgsim.cli.options import SEED_MAX, command_line, device_option, out_option, setting_option, world_option
from sgsim.settings import bounds_of, default_of


def _optional(loader):
    """A helper network from the cache, or None when its weights are not there (the inversion does without)."""
    from checkpoints.errors import MissingWeightsError

    try:
        return loader()
    except MissingWeightsError:
        return None


@click.command("invert")
@click.option("--image", type=click.Path(path_type=Path), required=True, help="Photo to invert (any size).")
@out_option(required=True)
@setting_option("generator")
@world_option
@setting_option("inversion_method")
@setting_option("photo_encoder")
@click.option("--steps", type=click.IntRange(*bounds_of("invert_steps")), default=default_of("invert_steps"), show_default=True,
              help="Steps of the W fit (ADA projector; --method optimise).")  # an edit's --invert-steps, under the name `invert` has always given it
@setting_option("refine_steps")
@setting_option("align")
@device_option
@click.option("--seed", type=click.IntRange(0, SEED_MAX), default=0, show_default=True, help="Seeds the initial noise and the w exploration noise.")
def invert_command(image, out, overwrite, generator, world, inversion_method, photo_encoder, steps, refine_steps, align, device,
                   seed) -> None:
    """Find the W+ latent of a photo with the generator, for `sgsim edit --latent`.

    Writes input.png (the aligned or cropped photo), reconstruction.png, latent.npz ('w': W+ [1, num_ws, w_dim],
    'noise.*' when the noise was fitted) and run.json (the method and why, the reconstruction's distances).
    """
    from checkpoints import resolve
    from sgsim.alignment import import_faces_extra
    from sgsim.atomic import staged_output_dir
    from sgsim.components import load_identity, load_lpips
    from sgsim.devices import parse_device
    from sgsim.editing.sources import ImageSource
    from sgsim.images import check_image
    from sgsim.latents import write_latent_file
    from sgsim.outputs import is_run_folder, run_record, weights_record, write_json, write_png
    from sgsim.photo_inversion import describe_distances, invert_photo, inversion_record
    from stylegan2 import load_generator

    device = parse_device(device)
    weights = resolve(generator)  # missing weights fail with the download instruction before anything else
    check_image(image)
    source = ImageSource(image, align, inversion_method, photo_encoder)
    if source.plan(generator, steps, refine_steps).align:  # a missing encoder asked for, or 'faces' extra, fails now
        import_faces_extra()
    outputs = ["input.png", "reconstruction.png", "latent.npz", "run.json"]
    with staged_output_dir(out, overwrite, is_run_folder) as staging:
        started = time.perf_counter()
        G = load_generator(weights, device=device).eval()
        plan = source.plan(generator, steps, refine_steps, G.metadata)  # the file's own metadata may say it holds faces
        lpips = _optional(lambda: load_lpips(device=device))
        identity = _optional(lambda: load_identity(device=device)) if plan.align else None
        target, inversion = invert_photo(G, image, plan, lpips=lpips.component if lpips else None,
                                         identity=identity.component if identity else None, seed=seed)
        result = inversion.result
        write_png(staging / "input.png", target)
        write_png(staging / "reconstruction.png", result.image)
        write_latent_file(staging / "latent.npz", noise=result.noise, w=result.w_plus)
        files = {"generator": weights, **{name: item.weights for name, item in (("lpips", lpips), ("identity", identity)) if item}}
        if plan.encoder is not None:
            files["photo_encoder"] = Path(plan.encoder)
        write_json(staging / "run.json", run_record(
            "invert", command_line(), **inversion_record(image, inversion, seed), generator=generator, world=world, device=str(device),
            loss=("lpips" if result.used_lpips else "pixels") if result.losses else None,
            final_loss=float(result.losses[-1]) if result.losses else None, weights=weights_record(files),
            timings_s={"total": time.perf_counter() - started}, outputs=outputs,
        ))
    click.echo(f"reconstruction distance to the photo: {describe_distances(inversion.distances)}")
    click.echo(f"wrote {', '.join(outputs[:-1])} and run.json to {out}")
