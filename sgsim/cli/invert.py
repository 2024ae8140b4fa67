"""`sgsim invert`: find the W+ latent of a photo with the generator (ADA projector, then a W+ refinement), for
`sgsim edit --latent`."""

from __future__ import annotations

import time
from pathlib import Path

import click

from sgsim.cli.options import SEED_MAX, command_line, device_option, out_option, setting_option, world_option
from sgsim.settings import bounds_of, default_of


@click.command("invert")
@click.option("--image", type=click.Path(path_type=Path), required=True, help="Photo to invert (any size).")
@out_option(required=True)
@setting_option("generator")
@world_option
@click.option("--steps", type=click.IntRange(*bounds_of("invert_steps")), default=default_of("invert_steps"), show_default=True,
              help="Steps of the W fit (ADA projector).")  # an edit's --invert-steps, under the name `invert` has always given it
@setting_option("refine_steps")
@setting_option("align")
@device_option
@click.option("--seed", type=click.IntRange(0, SEED_MAX), default=0, show_default=True, help="Seeds the initial noise and the w exploration noise.")
def invert_command(image, out, overwrite, generator, world, steps, refine_steps, align, device, seed) -> None:
    """Find the W+ latent of a photo with the generator, for `sgsim edit --latent`.

    Writes input.png (the aligned or cropped photo), reconstruction.png, latent.npz ('w': W+ [1, num_ws, w_dim],
    'noise.*') and run.json.
    """
    from checkpoints import resolve
    from sgsim.alignment import alignment, import_faces_extra
    from sgsim.atomic import staged_output_dir
    from sgsim.devices import parse_device
    from sgsim.editing.sources import invert_photo
    from sgsim.images import check_image
    from sgsim.latents import write_latent_file
    from sgsim.outputs import is_run_folder, run_record, weights_record, write_json, write_png
    from sgsim.progress import inversion_bar
    from stylegan2 import load_generator

    device = parse_device(device)
    weights = resolve(generator)  # missing weights fail with the download instruction before anything else
    check_image(image)
    asked = align
    align, reason = alignment(generator, asked)
    if align:
        import_faces_extra()  # a missing 'faces' extra fails now, with its install line
    outputs = ["input.png", "reconstruction.png", "latent.npz", "run.json"]
    with staged_output_dir(out, overwrite, is_run_folder) as staging:
        started = time.perf_counter()
        G = load_generator(weights, device=device).eval()
        align, reason = alignment(generator, asked, G.metadata)  # the file's own metadata may say it holds faces
        if align:
            import_faces_extra()
        click.echo(reason)
        with inversion_bar(steps + refine_steps) as on_step:
            target, result, lpips_file = invert_photo(G, image, align, steps, refine_steps, seed, callback=on_step)
        write_png(staging / "input.png", target)
        write_png(staging / "reconstruction.png", result.image)
        write_latent_file(staging / "latent.npz", noise=result.noise, w=result.w_plus)
        files = {"generator": weights, **({"lpips": lpips_file} if lpips_file is not None else {})}
        write_json(staging / "run.json", run_record(
            "invert", command_line(), image=image, generator=generator, world=world, align=align, align_reason=reason, steps=steps, refine_steps=refine_steps,
            inversion_seed=seed, device=str(device), loss="lpips" if result.used_lpips else "pixels",
            final_loss=float(result.losses[-1]), weights=weights_record(files), timings_s={"total": time.perf_counter() - started},
            outputs=outputs,
        ))
    click.echo(f"wrote {', '.join(outputs[:-1])} and run.json to {out} (final loss {result.losses[-1]:.4f})")
