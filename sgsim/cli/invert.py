"""`sgsim invert`: find the W+ latent of a photo with the generator (ADA projector), for `sgsim edit --latent`."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("invert")
@click.option("--image", type=click.Path(path_type=Path), required=True, help="Photo to invert (any size; centre-cropped).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Output folder.")
@click.option("--generator", default="ffhq", show_default=True, help="Generator: manifest name or checkpoint path.")
@click.option("--steps", type=click.IntRange(min=1), default=1000, show_default=True)
@click.option("--device", default=None, help="torch device (default: cuda if available, else cpu).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds the initial noise and the w exploration noise.")
def invert_command(image, out, generator, steps, device, seed) -> None:
    """Write source.png (the cropped target), inverted.png and latent.npz ('w': W+ [1, num_ws, w_dim], 'noise.*')."""
    import torch
    from tqdm import tqdm

    from checkpoints import resolve
    from sgsim.cli.edit import write_npz
    from sgsim.atomic import staged_output_dir
    from sgsim.images import read_image, write_png
    from sgsim.inversion import invert
    from sgsim.lpips import load_lpips_if_present
    from stylegan2 import load_generator

    device = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    G = load_generator(resolve(generator), device=device).eval()
    target = read_image(image, G.img_resolution)
    lpips = load_lpips_if_present()
    with tqdm(total=steps, desc="invert", unit="step", leave=False) as bar:
        def on_step(step: int, loss: float) -> None:
            bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
            bar.update(1)

        result = invert(G, target, steps=steps, lpips=lpips, seed=seed, callback=on_step)
    with staged_output_dir(out) as staging:
        write_png(staging / "source.png", target)
        write_png(staging / "inverted.png", result.image)
        noise = {f"noise.{name}": value.cpu().numpy() for name, value in result.noise.items()}
        write_npz(staging / "latent.npz", w=result.w_plus.cpu().numpy(), **noise)
    click.echo(f"wrote source.png, inverted.png and latent.npz to {out} (final loss {result.losses[-1]:.4f})")
