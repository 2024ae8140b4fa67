"""Benchmark embedding an ESC-50-size dataset: (a) the reference's per-clip pipeline re-created, (b) sgsim's embed_dataset.

The dataset is built in a temporary folder in ESC-50's layout (5 s, 44.1 kHz, mono, 16-bit clips,
meta/esc50.csv) from the repository's real recordings (tests/data), each copy changed slightly and
deterministically (gain, circular shift, faint noise), so every file differs and no cache can help.
The encoder is a full-size sgsim-resnet18 with seeded random weights (the speed does not depend on them).

(a) is what the authors' code does for every clip (docs/reference.md#sgsim-audio-encoder): librosa.load at
44.1 kHz, librosa's mel spectrogram and power_to_db in numpy, crop or pad, a bilinear resize, one forward of
batch 1. It is timed on an evenly spaced sample of the clips (it is linear in the clips), half before (b) and
half after so that a change of the machine's load during the run biases neither, and after one untimed clip:
librosa's first call compiles its numba kernels (about 3 s), which a whole run pays once, not per clip.
(b) runs on every clip with a cold cache (a fresh cache folder), its one-time costs (copying the encoder,
hashing its weights, starting the decoding processes) included, at `--precision`. Both run in this process
with the same torch threads, and (b)'s embeddings of the sampled clips are compared with (a)'s: fp32 must
reproduce them (cosine 0.9999), bf16 stay within its tolerance (cosine 0.999, sgsim/evaluation/embeddings.py).

    python scripts/bench_evaluation.py                      # 2000 clips, (a) on 100 of them
    python scripts/bench_evaluation.py --precision bf16     # (b) under bfloat16 autocast
    python scripts/bench_evaluation.py --clips 64 --reference-clips 8     # a smoke run
    python scripts/bench_evaluation.py --device cuda        # both on a GPU: (a) decodes and computes features on the CPU
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import librosa
import numpy as np
import soundfile
import torch
import torch.nn.functional as F

from encoders.sgsim_encoder import SgsimEncoder
from sgsim.audio import load_audio
from sgsim.devices import parse_device
from sgsim.datasets import read_esc50
from sgsim.evaluation.embeddings import EMBEDDING_PRECISIONS, embed_dataset

TEST_DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
ESC50_RATE = 44100
ESC50_SECONDS = 5.0
FOLDS = 5
# The smallest cosine between (a)'s and (b)'s embeddings of a clip that counts as the same result, per (b) precision.
AGREEMENT = {"fp32": 0.9999, "bf16": 0.999}


def source_clips() -> list[tuple[str, np.ndarray]]:
    """The repository's real recordings as ESC-50 clips: (class name, 5 s mono float32 at 44.1 kHz)."""
    paths = sorted((TEST_DATA / "audio").glob("*.wav")) + sorted((TEST_DATA / "esc50-mini" / "audio").glob("*.wav"))
    length = int(ESC50_RATE * ESC50_SECONDS)
    sources = []
    for path in paths:
        waveform, _ = load_audio(path, ESC50_RATE, mono=True, duration=ESC50_SECONDS)
        sources.append((path.stem.replace("-", "_"), np.pad(waveform, (0, max(0, length - len(waveform))))[:length]))
    return sources


def build_esc50(root: Path, clips: int, seed: int = 0) -> Path:
    """An ESC-50-layout folder of `clips` perturbed copies of the source clips (one class per source)."""
    sources = source_clips()
    (root / "audio").mkdir(parents=True)
    (root / "meta").mkdir()
    rng = np.random.default_rng(seed)
    rows = []
    for number in range(clips):
        target = number % len(sources)
        category, waveform = sources[target]
        gain = 10 ** (rng.uniform(-6.0, 0.0) / 20)
        shifted = np.roll(waveform, int(rng.integers(0, ESC50_RATE // 2)))
        noisy = gain * shifted + rng.normal(0.0, 1e-3, shifted.shape)
        fold = 1 + number % FOLDS
        name = f"{fold}-{100000 + number}-A-{target}.wav"
        soundfile.write(root / "audio" / name, np.clip(noisy, -1.0, 1.0).astype(np.float32), ESC50_RATE, subtype="PCM_16")
        rows.append([name, fold, target, category, False, 100000 + number, "A"])
    with open(root / "meta" / "esc50.csv", "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["filename", "fold", "target", "category", "esc10", "src_file", "take"])
        writer.writerows(rows)
    return root


def bilinear_resize(image: np.ndarray, rows: int, columns: int) -> np.ndarray:
    """OpenCV INTER_LINEAR on a float32 image (half-pixel centres, edge clamped, no antialias), in numpy float32.
    Columns first: shrinking 864 columns to 128 before growing 128 rows to 512 keeps it as cheap as cv2.resize
    (0.2 ms, not 15), so (a) pays no more than the reference does."""

    def axis_weights(source: int, target: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        position = np.clip((np.arange(target) + 0.5) * source / target - 0.5, 0, source - 1)
        low = np.floor(position).astype(np.int64)
        return low, np.minimum(low + 1, source - 1), (position - low).astype(np.float32)

    left, right, column_weight = axis_weights(image.shape[1], columns)
    image = image[:, left] * (1 - column_weight) + image[:, right] * column_weight
    top, bottom, row_weight = axis_weights(image.shape[0], rows)
    return image[top] * (1 - row_weight[:, None]) + image[bottom] * row_weight[:, None]


def reference_embedding(path: Path, network: torch.nn.Module, frames: int = 864) -> torch.Tensor:
    """One clip through the reference pipeline: librosa decode, numpy features, a batch-1 forward; unit [512]."""
    waveform, _ = librosa.load(path, sr=ESC50_RATE)
    mel = librosa.feature.melspectrogram(y=waveform, sr=ESC50_RATE, pad_mode="reflect")  # reflect: librosa 0.8.1's default
    log_mel = librosa.power_to_db(mel, ref=np.max) / 80 + 1
    start = max(0, (log_mel.shape[1] - frames) // 2)
    log_mel = np.pad(log_mel[:, start : start + frames], ((0, 0), (0, max(0, frames - log_mel.shape[1]))))
    image = bilinear_resize(log_mel, 512, 128).reshape(1, 1, 128, 512).astype(np.float32)
    device = next(network.parameters()).device
    with torch.no_grad():
        return F.normalize(network(torch.from_numpy(image).to(device)), dim=-1)[0].cpu()


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=2000, help="clips in the dataset (ESC-50: 2000)")
    parser.add_argument("--reference-clips", type=int, default=100, help="clips timed through (a), evenly spaced")
    parser.add_argument("--batch-size", type=int, default=None, help="(b)'s batch size (default: embed_dataset's)")
    parser.add_argument("--workers", type=int, default=None, help="(b)'s decoding processes (default: embed_dataset's)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads of both (default: torch's)")
    parser.add_argument("--precision", choices=EMBEDDING_PRECISIONS, default="fp32", help="(b)'s precision")
    parser.add_argument("--device", default="cpu", help="where both run their networks (default: %(default)s)")
    return parser.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    encoder = SgsimEncoder("resnet18").eval().to(parse_device(args.device))
    network = torch.nn.Sequential(encoder.conv, encoder.feature_extractor)  # what the reference calls per clip
    options = {key: value for key, value in (("batch_size", args.batch_size), ("workers", args.workers)) if value is not None}
    with tempfile.TemporaryDirectory(prefix="sgsim-bench-eval-") as folder:
        started = time.perf_counter()
        dataset = read_esc50(build_esc50(Path(folder) / "esc50", args.clips))
        print(f"built {len(dataset.clips)} clips in {time.perf_counter() - started:.1f} s; device {encoder.device}, "
              f"torch threads {torch.get_num_threads()}")
        sample = dataset.clips[:: max(1, len(dataset.clips) // args.reference_clips)][: args.reference_clips]
        reference_embedding(sample[-1].path, network)  # librosa's numba warm-up, paid once per run
        before, after = sample[::2], sample[1::2]  # (a) half before and half after (b): a change of load biases neither
        started = time.perf_counter()
        reference = [reference_embedding(clip.path, network) for clip in before]
        reference_seconds = time.perf_counter() - started
        started = time.perf_counter()
        embedded = embed_dataset(encoder, dataset, Path(folder) / "cache", precision=args.precision, **options)
        sgsim_rate = len(dataset.clips) / (time.perf_counter() - started)
        started = time.perf_counter()
        reference += [reference_embedding(clip.path, network) for clip in after]
        reference_rate = len(sample) / (reference_seconds + time.perf_counter() - started)
    assert embedded.encoded == len(dataset.clips), embedded.problems
    rows = [dataset.clips.index(clip) for clip in before + after]
    cosine = F.cosine_similarity(embedded.embeddings[rows], torch.stack(reference)).min().item()
    print(f"(a) reference per clip : {reference_rate:8.2f} clips/s  ({len(sample)} clips timed)")
    print(f"(b) sgsim embed_dataset: {sgsim_rate:8.2f} clips/s  ({len(dataset.clips)} clips, cold cache, {args.precision})  "
          f"{sgsim_rate / reference_rate:.2f}x (a)")
    print(f"smallest cosine between (a) and (b) embeddings of the same clips: {cosine:.7f}")
    if cosine < AGREEMENT[args.precision]:
        sys.exit(f"(b) at {args.precision} does not reproduce (a) within cosine {AGREEMENT[args.precision]}: the speed-up is not a like-for-like one")


if __name__ == "__main__":
    main()
