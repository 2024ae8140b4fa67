"""`sgsim invert`: find the W+ latent of a photo with the generator, by a trained encoder (e4e), optimisation (ADA
projector, then a W+ refinement) or both, for `sgsim edit --latent`."""

from __future__ import annotations

import time
from pathlib import Path

import click

from sgsim.cli.options import (SEED_MAX, align_option, command_line, device_option, out_option, refine_steps_option,
                               steps_option)


def _optional(loader):
    """A helper network from the cache, or None when its weights are not there (the inversion does without)."""
    from checkpoints.errors import MissingWeightsError

    try:
        return loader()
    except MissingWeightsError:
        return None


def invert_planned(G, image: Path, plan, seed: int):
    """Read the photo (FFHQ-aligned or centre-cropped) and invert it by `plan` (sgsim.photo_inversion.InversionPlan)
    under its own progress bar (stage, loss, ETA); the reconstruction's distances are measured too (LPIPS and, for
    aligned faces, identity, when their weights are cached).

    Returns the target [1, 3, R, R], the PhotoInversion and the helper weights files used by name."""
    from tqdm import tqdm

    from sgsim.alignment import read_photo
    from sgsim.components import load_identity, load_lpips
    from sgsim.photo_inversion import invert_photo_with_plan

    target = read_photo(image, G.img_resolution, plan.align)
    device = next(G.parameters()).device
    lpips = _optional(lambda: load_lpips(device=device))
    identity = _optional(lambda: load_identity(device=device)) if plan.align else None
    with tqdm(total=plan.steps + plan.refine_steps, desc=f"invert ({plan.method})", unit="step", leave=False,
              disable=plan.steps + plan.refine_steps == 0) as bar:
        def on_step(progress) -> None:
            bar.set_postfix(stage=progress.stage, loss=f"{progress.loss:.4f}", refresh=False)
            bar.update(1)

        inversion = invert_photo_with_plan(G, target, plan, lpips=lpips.component if lpips else None,
                                           identity=identity.component if identity else None, seed=seed, callback=on_step)
    files = {name: item.weights for name, item in (("lpips", lpips), ("identity", identity)) if item is not None}
    if plan.encoder is not None:
        files["encoder"] = Path(plan.encoder)
    return target, inversion, files


def invert_photo(G, image: Path, align: bool, steps: int, refine_steps: int, seed: int):
    """The optimisation inversion of a photo, as `edit --image` and `batch` run it until they take an InversionPlan.

    Returns the target [1, 3, R, R], the InversionResult and the LPIPS weights file used (None: pixel loss)."""
    from sgsim.photo_inversion import OPTIMISE, InversionPlan

    plan = InversionPlan(align, OPTIMISE, "the command's default", None, steps, refine_steps)
    target, inversion, files = invert_planned(G, image, plan, seed)
    return target, inversion.result, files.get("lpips")


def describe_distances(distances: dict[str, float]) -> str:
    """'LPIPS 0.312, identity 0.41, pixel MSE 0.020' for the reconstruction's distances to the photo."""
    names = {"lpips": "LPIPS", "identity": "identity", "pixel_mse": "pixel MSE"}
    return ", ".join(f"{names[key]} {distances[key]:.4g}" for key in names if key in distances)


def _given(name: str):
    """The option's value when the user gave it, None when it is click's default (the method then picks)."""
    from click.core import ParameterSource

    context = click.get_current_context()
    return context.params[name] if context.get_parameter_source(name) != ParameterSource.DEFAULT else None


@click.command("invert")
@click.option("--image", type=click.Path(path_type=Path), required=True, help="Photo to invert (any size).")
@out_option(required=True)
@click.option("--generator", default="ffhq", show_default=True, help="Generator: manifest name or checkpoint path.")
@click.option("--method", type=click.Choice(["e4e", "optimise", "e4e+optimise"]), default=None,
              help="e4e: a trained encoder, seconds; optimise: ADA projector + W+ refinement, minutes to hours; "
                   "e4e+optimise: the refinement started from the encoder's code. Default: e4e when an encoder for the "
                   "generator is at hand, else optimise.")
@click.option("--encoder", default=None, help="e4e / pSp checkpoint (path or manifest name); default: the published "
                                              "one for the generator (e4e-ffhq for ffhq).")
@steps_option(1000, help="Steps of the W fit (ADA projector; --method optimise).")
@refine_steps_option
@align_option
@device_option
@click.option("--seed", type=click.IntRange(0, SEED_MAX), default=0, show_default=True, help="Seeds the initial noise and the w exploration noise.")
def invert_command(image, out, overwrite, generator, method, encoder, steps, refine_steps, align, device, seed) -> None:
    """Find the W+ latent of a photo with the generator, for `sgsim edit --latent`.

    Writes input.png (the aligned or cropped photo), reconstruction.png, latent.npz ('w': W+ [1, num_ws, w_dim],
    'noise.*' when the noise was fitted) and run.json (the method and why, the reconstruction's distances).
    """
    from checkpoints import resolve
    from sgsim.alignment import import_faces_extra
    from sgsim.atomic import staged_output_dir
    from sgsim.devices import parse_device
    from sgsim.images import check_image
    from sgsim.latents import write_latent_file
    from sgsim.outputs import is_run_folder, run_record, weights_record, write_json, write_png
    from sgsim.photo_inversion import plan_photo_inversion
    from stylegan2 import load_generator

    device = parse_device(device)
    weights = resolve(generator)  # missing weights fail with the download instruction before anything else
    check_image(image)
    plan = plan_photo_inversion(generator, method, encoder, align, _given("steps"), _given("refine_steps"))
    if plan.align:
        import_faces_extra()  # a missing 'faces' extra fails now, with its install line
    click.echo(f"inversion: {plan.method} ({plan.reason})")
    outputs = ["input.png", "reconstruction.png", "latent.npz", "run.json"]
    with staged_output_dir(out, overwrite, is_run_folder) as staging:
        started = time.perf_counter()
        G = load_generator(weights, device=device).eval()
        target, inversion, helper_files = invert_planned(G, image, plan, seed)
        result = inversion.result
        write_png(staging / "input.png", target)
        write_png(staging / "reconstruction.png", result.image)
        write_latent_file(staging / "latent.npz", noise=result.noise, w=result.w_plus)
        write_json(staging / "run.json", run_record(
            "invert", command_line(), image=image, generator=generator, align=plan.align, method=plan.method,
            method_reason=plan.reason, steps=plan.steps, refine_steps=plan.refine_steps, inversion_seed=seed,
            device=str(device), loss=("lpips" if result.used_lpips else "pixels") if result.losses else None,
            final_loss=float(result.losses[-1]) if result.losses else None, reconstruction=inversion.distances,
            weights=weights_record({"generator": weights, **helper_files}),
            timings_s={"total": time.perf_counter() - started}, outputs=outputs,
        ))
    click.echo(f"reconstruction distance to the photo: {describe_distances(inversion.distances)}")
    click.echo(f"wrote {', '.join(outputs[:-1])} and run.json to {out}")
