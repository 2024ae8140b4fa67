"""README's picture of real edits in the shapes world: `python scripts/world_grid.py [--out docs/world-grid.png]`.

A row per seed: its picture, then its edit toward each spoken word (the held-out voice of audio/<word>.flac), with
the world's default settings, each captioned by what the judge reads.
"""

from __future__ import annotations

import argparse
from pathlib import Path

SCALE = 4  # pixels per world pixel in the picture


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "world-grid.png")
    parser.add_argument("--seeds", type=int, nargs="+", default=[10000, 10001, 10002, 10003])
    args = parser.parse_args()

    import numpy as np
    from PIL import Image, ImageDraw

    from sgsim.editing import Editor, Target
    from sgsim.settings import EditSettings
    from sgsim.worlds import resolve_world, world_networks
    from sgsim.worlds.checks import WORD_FILE
    from sgsim.worlds.judged import edit_seeds
    from sgsim.worlds.shapes import WORDS, judge

    files = resolve_world("shapes")
    settings = world_networks(EditSettings(world="shapes"), files)
    editor = Editor.from_pretrained(settings.generator, settings.encoder, encoder_checkpoint=settings.encoder_checkpoint,
                                    clip=settings.clip_weights, device="cpu")
    pictures = edit_seeds(editor, [(Target(audio=files.audio / WORD_FILE.format(word)), args.seeds) for word in WORDS], settings).pictures
    columns = [("source", pictures[0][0])] + [(f'"{word}"', edited) for word, (_, edited) in zip(WORDS, pictures)]
    side, caption = 32 * SCALE, 28
    sheet = Image.new("RGB", (side * len(columns), caption + (side + caption) * len(args.seeds)), "white")
    draw = ImageDraw.Draw(sheet)
    for column, (title, images) in enumerate(columns):
        draw.text((column * side + 4, 6), title, fill="black")
        verdict = judge(images)
        for row, image in enumerate(images):
            pixels = ((image.permute(1, 2, 0).numpy() + 1) * 127.5).clip(0, 255).astype(np.uint8)
            top = caption + row * (side + caption)
            sheet.paste(Image.fromarray(pixels).resize((side, side), Image.NEAREST), (column * side, top))
            draw.text((column * side + 4, top + side + 4), f"{verdict.colour_names[row]} {verdict.shape_names[row]}", fill="black")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
