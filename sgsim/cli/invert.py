"""`sgsim invert`: find the W+ latent of a photo with the generator (ADA projector), for `sgsim edit --latent`."""

from __future__ import annotations

import time
from pathlib import Path

import click

from sgsim.cli.options import SEED_MAX, command_line, device_option, out_option, steps_option


@click.command("invert")
@click.option("--image", type=click.Path(path_type=Path), required=True, help="Photo to invert (any size; centre-cropped).")
@out_option(required=True)
@click.option("--generator", default="ffhq", show_default=True, help="Generator: manifest name or checkpoint path.")
@steps_option(1000)
@device_option
@click.option("--seed", type=click.IntRange(0, SEED_MAX), default=0, show_default=True, help="Seeds the initial noise and the w exploration noise.")
def invert_command(image, out, overwrite, generator, steps, device, seed) -> None:
    """Find the W+ latent of a photo with the generator, for `sgsim edit --latent`.

    Writes source.png (the cropped target), inverted.png, latent.npz ('w': W+ [1, num_ws, w_dim], 'noise.*') and run.json.
    """
    from tqdm import tqdm

    from checkpoints import resolve
    from sgsim.atomic import staged_output_dir
    from sgsim.devices import parse_device
    from sgsim.images import check_image, read_image
    from sgsim.inversion import invert
    from sgsim.latents import write_latent_file
    from sgsim.lpips import load_lpips_if_present
    from sgsim.outputs import is_run_folder, run_record, weights_record, write_json, write_png
    from stylegan2 import load_generator

    device = parse_device(device)
    weights = resolve(generator)  # missing weights fail with the download instruction before anything else
    check_image(image)
    with staged_output_dir(out, overwrite, is_run_folder) as staging:
        started = time.perf_counter()
        G = load_generator(weights, device=device).eval()
        target = read_image(image, G.img_resolution)
        lpips = load_lpips_if_present()
        with tqdm(total=steps, desc="invert", unit="step", leave=False) as bar:
            def on_step(step: int, loss: float) -> None:
                bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
                bar.update(1)

            result = invert(G, target, steps=steps, lpips=lpips, seed=seed, callback=on_step)
        write_png(staging / "source.png", target)
        write_png(staging / "inverted.png", result.image)
        write_latent_file(staging / "latent.npz", noise=result.noise, w=result.w_plus)
        write_json(staging / "run.json", run_record(
            "invert", command_line(), image=image, generator=generator, steps=steps, inversion_seed=seed, device=str(device),
            loss="lpips" if lpips is not None else "pixels", final_loss=float(result.losses[-1]),
            weights=weights_record({"generator": weights}), timings_s={"total": time.perf_counter() - started},
            outputs=["source.png", "inverted.png", "latent.npz", "run.json"],
        ))
    click.echo(f"wrote source.png, inverted.png, latent.npz and run.json to {out} (final loss {result.losses[-1]:.4f})")
