"""Copy a built shapes world into the repository's bundle: `python scripts/ship_world.py BUILD_DIR [--to examples/worlds/shapes]`.

Copies the three networks and run.json as `sgsim world build` left them, and a few held-out recordings as FLAC:
audio/<word>.wav-named clips of one held-out voice (the edit examples), audio/sequence.wav with its word spans, and
speech/test.csv with the clips of SHIPPED_VOICES (the held-out set `compare-encoders --world shapes` and the tests read).
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
from pathlib import Path

import soundfile

EDIT_VOICE = "en-029+m5"  # the sequence's voice: a test-only accent with a test-only variant
SHIPPED_VOICES = ("en-029+m5", "en-029+Annie", "en-us+john", "en-gb-x-rp+f4")


def to_flac(source: Path, target: Path) -> None:
    audio, rate = soundfile.read(str(source), dtype="float32")
    target.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(target), audio, rate, format="FLAC", subtype="PCM_16")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("build", type=Path)
    parser.add_argument("--to", type=Path, default=Path(__file__).resolve().parents[1] / "examples" / "worlds" / "shapes")
    args = parser.parse_args()
    from sgsim.worlds import AUDIO_FOLDER, world_files

    built, bundle = world_files(args.build), world_files(args.to)
    args.to.mkdir(parents=True, exist_ok=True)
    for source, target in ((built.generator, bundle.generator), (built.clip, bundle.clip), (built.encoder, bundle.encoder)):
        shutil.copyfile(source, target)
    record = json.loads((args.build / "run.json").read_text())
    (args.to / "run.json").write_text(json.dumps(record, indent=2) + "\n")
    speech = args.build / "speech"
    with open(speech / "test.csv", newline="") as stream:
        rows = [row for row in csv.DictReader(stream) if row["voice"] in SHIPPED_VOICES]
    audio = args.to / AUDIO_FOLDER
    for row in rows:
        name = Path(row["path"]).with_suffix(".flac").name
        to_flac(speech / row["path"], args.to / "speech" / "test" / name)
        if row["voice"] == EDIT_VOICE:
            to_flac(speech / row["path"], audio / f"{row['label']}.flac")
        row["path"] = f"test/{name}"
    with open(args.to / "speech" / "test.csv", "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    to_flac(speech / "sequence.wav", audio / "sequence.flac")
    (audio / "sequence.json").write_text(json.dumps(record["stages"]["speech"]["sequence"], indent=2) + "\n")
    print(f"shipped {len(rows)} held-out clips and the networks to {args.to}")


if __name__ == "__main__":
    main()
