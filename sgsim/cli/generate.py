"""`sgsim generate`: the generator's images of some seeds, with their W+ latents for `sgsim edit --latent`."""

from __future__ import annotations

import time

import click

from sgsim.cli.options import (SEED_MAX, command_line, device_option, out_option, parse_seeds, setting_option,
                               transform_options, world_option)


@click.command("generate")
@click.option("--seed", "seed_list", type=click.IntRange(0, SEED_MAX), multiple=True, help="Seed to draw (repeat for several).")
@click.option("--seeds", "seed_ranges", default=None, metavar="LIST", help="Seeds and ranges, e.g. 0-3,42 (as NVIDIA's gen_images.py).")
@out_option(required=True)
@setting_option("generator")
@world_option
@setting_option("truncation", help="psi toward w_avg (1 = none); the default matches sgsim edit --seed.")
@click.option("--class", "class_index", type=click.IntRange(min=0), default=None, help="Class to draw (conditional generators only).")
@transform_options
@device_option
def generate_command(seed_list, seed_ranges, out, overwrite, generator, world, truncation, class_index, translate, rotate,
                     device) -> None:
    """Draw the generator's images of some seeds, with their W+ latents for `sgsim edit --latent`.

    Writes seedNNNN.png and seedNNNN.npz ('w': W+ [num_ws, w_dim]) per seed, and run.json.
    """
    import torch

    from checkpoints import resolve
    from sgsim.camera import Camera, require_movable
    from sgsim.atomic import staged_output_dir
    from sgsim.devices import parse_device
    from sgsim.editing.sources import seed_latent
    from sgsim.latents import write_latent_file
    from sgsim.outputs import is_run_folder, run_record, weights_record, write_json, write_png
    from stylegan2 import load_generator

    seeds = list(dict.fromkeys([*(parse_seeds(seed_ranges) if seed_ranges else []), *seed_list]))  # --seeds, then --seed; each once
    if not seeds:
        raise click.UsageError("pass --seeds LIST (e.g. 0-3,42) or --seed N")
    device = parse_device(device)
    with staged_output_dir(out, overwrite, is_run_folder) as staging:
        started = time.perf_counter()
        weights = resolve(generator)
        G = load_generator(weights, device=device).eval()
        camera = Camera(translate=translate or (0.0, 0.0), rotate=rotate)
        require_movable(G, camera)
        transforms = None if camera.is_identity else camera.transforms([0.0]).to(device)
        latents = [seed_latent(G, seed, truncation=truncation, class_index=class_index) for seed in seeds]  # a bad class fails before any output
        outputs = []
        for seed, w in zip(seeds, latents):
            with torch.no_grad():
                image = G.synthesis(w[None], noise_mode="const", **({} if transforms is None else {"transforms": transforms}))
            write_png(staging / f"seed{seed:04d}.png", image)
            write_latent_file(staging / f"seed{seed:04d}.npz", w=w)
            outputs += [f"seed{seed:04d}.png", f"seed{seed:04d}.npz"]
        write_json(staging / "run.json", run_record(
            "generate", command_line(), seeds=seeds, generator=generator, world=world, truncation=truncation, class_index=class_index,
            camera=None if camera.is_identity else camera.record(),
            device=str(device), weights=weights_record({"generator": weights}),
            timings_s={"total": time.perf_counter() - started}, outputs=outputs + ["run.json"],
        ))
    click.echo(f"wrote {len(outputs) + 1} files to {out}")
