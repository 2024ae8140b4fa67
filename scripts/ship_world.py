"""Copy a built shapes world into the repository's bundle: `python scripts/ship_world.py BUILD_DIR [--to examples/worlds/shapes]`.

Copies the four networks (generator, its e4e photo encoder, CLIP, audio encoder), run.json and the example sounds
(audio/) as `sgsim world build` left them, and the held-out clips of SHIPPED_VOICES as FLAC with their
speech/test.csv (the set `compare-encoders --world shapes` and the tests read); the build's full held-out set stays
with the build.
"""

from __future__ import annotations

import argparse
import csv
import shutil
from pathlib import Path

SHIPPED_VOICES = ("en-029+Annie", "en-029+m5", "en-us+john", "en-gb-x-rp+f4")  # a test-only accent, and three others


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("build", type=Path)
    parser.add_argument("--to", type=Path, default=Path(__file__).resolve().parents[1] / "examples" / "worlds" / "shapes")
    args = parser.parse_args()
    from sgsim.worlds import world_files
    from sgsim.worlds.speech import to_flac

    built, bundle = world_files(args.build), world_files(args.to)
    args.to.mkdir(parents=True, exist_ok=True)
    for source, target in ((built.generator, bundle.generator), (built.style_encoder, bundle.style_encoder),
                           (built.clip, bundle.clip), (built.encoder, bundle.encoder),
                           (args.build / "run.json", args.to / "run.json")):
        shutil.copyfile(source, target)
    shutil.copytree(built.audio, bundle.audio, dirs_exist_ok=True)
    with open(args.build / "speech" / "test.csv", newline="") as stream:
        rows = [row for row in csv.DictReader(stream) if row["voice"] in SHIPPED_VOICES]
    for row in rows:
        name = Path(row["path"]).with_suffix(".flac").name
        to_flac(args.build / "speech" / row["path"], args.to / "speech" / "test" / name)
        row["path"] = f"test/{name}"
    with open(args.to / "speech" / "test.csv", "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    print(f"shipped the networks, audio/ and {len(rows)} held-out clips to {args.to}")


if __name__ == "__main__":
    main()
