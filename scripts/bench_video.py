"""Benchmark `sgsim video`: seconds of compute per second of video, and how the cost splits between keyframes and frames.

Networks are full size with seeded random weights built in-process (no downloads): a StyleGAN2 generator
(config-f channels at --resolution), open_clip ViT-B/32 and the sgsim-resnet18 audio encoder; the track is a
real sound from tests/data/audio, cut to --seconds. Three runs on the same track: a baseline, twice the frames
(fps x 2, same keyframes) and twice the keyframes (keyframe spacing / 2, same frames). Printed: seconds per video
second of the keyframe stage (embed + optimise) and of rendering + encoding, and the ratios of each run to the
baseline: the total follows the keyframes (x ~2) and hardly the frames.

    python scripts/bench_video.py --device cpu --resolution 256          # README "Sound-driven video" (CPU)
    python scripts/bench_video.py --device cuda --resolution 1024        # on a GPU
    python scripts/bench_video.py --stability                            # encoder agreement vs window length
    python scripts/bench_video.py --vs-one-batch --seconds 10 --steps 100 --repeats 2  # micro-batches vs all keyframes at once

--stability: for window lengths 0.5-4 s, the mean cosine between the embeddings of windows 0.5 s apart within each
of the eight demo sounds (how steady a keyframe target is) and between windows of different sounds (how well
targets separate), with the released sgsim-resnet18 weights when they are in the cache, else random ones (said).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile
import torch
import torch.nn.functional as F

from sgsim.audio import load_audio
from sgsim.editing import Editor
from sgsim.editing.video import embed_keyframes, write_video
from sgsim.editing.video_settings import DEFAULT_KEYFRAME_BATCH, DEFAULT_WARM_STEPS

AUDIO = Path(__file__).resolve().parents[1] / "tests" / "data" / "audio"
WINDOWS = (0.5, 1.0, 2.0, 4.0)


def build_editor(resolution: int, device: str) -> Editor:
    """Full-size networks with seeded random weights (landscape preset: no identity network needed)."""
    import open_clip

    from encoders.clip import ClipModel
    from encoders.registry import build_audio_encoder
    from stylegan2 import Generator

    torch.manual_seed(0)
    G = Generator(512, 0, 512, resolution, 3, mapping_kwargs={"num_layers": 8},
                  synthesis_kwargs={"channel_base": 32768, "channel_max": 512})
    clip = ClipModel.from_open_clip(open_clip.create_model("ViT-B-32-quickgelu", pretrained=None))
    return Editor(G, build_audio_encoder("sgsim-resnet18"), clip, device=device, preset="landscape")


def timed_video(editor: Editor, track: Path, out: Path, fps: float, keyframe_every: float, steps: int, **options) -> dict:
    started = time.perf_counter()
    video = editor.video(track, 0, fps=fps, keyframe_every=keyframe_every, steps=steps, precision="fp32", **options)
    keyframed = time.perf_counter()
    frames = write_video(out, video)
    done = time.perf_counter()
    final_clip = video.losses["clip"][-1][video.audible] if video.losses else np.zeros(0)
    return {"keyframes": len(video.keyframe_times), "frames": frames, "keyframe_s": keyframed - started,
            "render_s": done - keyframed, "duration": video.duration, "clip": float(final_clip.mean())}


def vs_one_batch(args: argparse.Namespace) -> None:
    """The defaults (keyframes in micro-batches, warm-started, --warm-steps) against every keyframe in one batch for
    --steps, the path before micro-batches, on the same track: seconds per video second of each stage, interleaved
    --repeats times (medians), and the mean final CLIP loss of the audible keyframes (equal quality = equal loss)."""
    import statistics

    if args.threads:
        torch.set_num_threads(args.threads)
    editor = build_editor(args.resolution, args.device)
    paths = {"one batch": dict(keyframe_batch=None),
             **{f"micro-batches, {warm} warm steps": dict(keyframe_batch=args.keyframe_batch, warm_steps=warm) for warm in args.warm_steps}}
    runs: dict[str, list[dict]] = {name: [] for name in paths}
    with tempfile.TemporaryDirectory() as folder:
        track = Path(folder) / "track.wav"
        waveform, rate = load_audio(AUDIO / args.sound, None, offset=1.0, duration=args.seconds)
        soundfile.write(track, waveform, rate)
        for _ in range(args.repeats):
            for name, options in paths.items():
                runs[name].append(timed_video(editor, track, Path(folder) / "v.mp4", args.fps, args.keyframe_every, args.steps, **options))
                print(name, {key: round(value, 4) for key, value in runs[name][-1].items()}, flush=True)
    print(f"{args.resolution} px on {args.device}, {args.seconds:g} s of {args.sound}, keyframe every {args.keyframe_every:g} s, "
          f"{args.steps} steps (micro-batches of {args.keyframe_batch}), torch threads {torch.get_num_threads()}")
    medians = {name: {key: statistics.median(run[key] for run in rows) for key in ("keyframe_s", "render_s", "clip")} | {"duration": rows[0]["duration"]}
               for name, rows in runs.items()}
    for name, m in medians.items():
        print(f"{name:<32} keyframes {m['keyframe_s'] / m['duration']:8.2f} s/s  render {m['render_s'] / m['duration']:6.2f} s/s  "
              f"total {(m['keyframe_s'] + m['render_s']) / m['duration']:8.2f} s/s  mean final keyframe CLIP loss {m['clip']:.4f}")
    base = medians.pop("one batch")
    for name, new in medians.items():
        print(f"{name} vs one batch: {(base['keyframe_s'] + base['render_s']) / (new['keyframe_s'] + new['render_s']):.2f}x per "
              f"video second ({base['keyframe_s'] / new['keyframe_s']:.2f}x the keyframe stage); CLIP loss {new['clip'] - base['clip']:+.4f}")


def benchmark(args: argparse.Namespace) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    editor = build_editor(args.resolution, args.device)
    with tempfile.TemporaryDirectory() as folder:
        track = Path(folder) / "track.wav"
        waveform, rate = load_audio(AUDIO / args.sound, None, offset=1.0, duration=args.seconds)
        soundfile.write(track, waveform, rate)
        timed_video(editor, track, Path(folder) / "warm.mp4", 2, args.seconds, 1)  # warm-up, not timed
        runs = {
            "baseline": timed_video(editor, track, Path(folder) / "a.mp4", args.fps, args.keyframe_every, args.steps),
            "2x frames": timed_video(editor, track, Path(folder) / "b.mp4", 2 * args.fps, args.keyframe_every, args.steps),
            "2x keyframes": timed_video(editor, track, Path(folder) / "c.mp4", args.fps, args.keyframe_every / 2, args.steps),
        }
    base = runs["baseline"]
    print(f"{args.resolution} px on {args.device}, {args.steps} steps, {args.seconds:g} s of {args.sound}, torch threads {torch.get_num_threads()}")
    print(f"{'run':<13} {'keyframes':>9} {'frames':>6} {'keyframe s/s':>12} {'render s/s':>10} {'total s/s':>9} {'x baseline':>10}")
    for name, run in runs.items():
        total = run["keyframe_s"] + run["render_s"]
        print(f"{name:<13} {run['keyframes']:>9} {run['frames']:>6} {run['keyframe_s'] / run['duration']:>12.2f} "
              f"{run['render_s'] / run['duration']:>10.2f} {total / run['duration']:>9.2f} "
              f"{total / (base['keyframe_s'] + base['render_s']):>10.2f}")


@torch.no_grad()
def stability(args: argparse.Namespace) -> None:
    from sgsim import components

    try:
        encoder = components.load_audio_encoder("sgsim-resnet18", device=args.device).component
        weights = "released sgsim-resnet18 weights"
    except Exception as exc:  # not in the cache: the measurement still shows the method, with random weights
        from encoders.registry import build_audio_encoder

        torch.manual_seed(0)
        encoder = build_audio_encoder("sgsim-resnet18").to(args.device).eval()
        weights = f"RANDOM sgsim-resnet18 weights ({type(exc).__name__}: released weights not in the cache)"
    print(f"window stability, {weights}")
    print(f"{'window s':>8} {'same sound, 0.5 s apart':>24} {'different sounds':>17}")
    sounds = sorted(AUDIO.glob("*.wav"))
    for window in WINDOWS:
        per_sound = []
        for path in sounds:
            duration = soundfile.info(str(path)).duration
            times = np.arange(window / 2, duration - window / 2 + 1e-9, 0.5)
            per_sound.append(embed_keyframes(path, times, encoder, window).directions)
        steady = np.mean([F.cosine_similarity(d[1:], d[:-1]).mean().item() for d in per_sound if len(d) > 1])  # drill.wav is 4 s
        means = F.normalize(torch.stack([d.mean(0) for d in per_sound]), dim=-1)
        cross = means @ means.T
        apart = cross[~torch.eye(len(sounds), dtype=torch.bool)].mean().item()
        print(f"{window:>8g} {steady:>24.4f} {apart:>17.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=2.0, help="length of the track")
    parser.add_argument("--fps", type=float, default=12)
    parser.add_argument("--keyframe-every", type=float, default=1.0)
    parser.add_argument("--sound", default="thunderstorm.wav")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--stability", action="store_true", help="measure embedding agreement vs window length instead")
    parser.add_argument("--vs-one-batch", action="store_true", help="the default micro-batches against all keyframes in one batch")
    parser.add_argument("--keyframe-batch", type=int, default=DEFAULT_KEYFRAME_BATCH, help="--vs-one-batch: keyframes per micro-batch")
    parser.add_argument("--warm-steps", type=int, nargs="+", default=[DEFAULT_WARM_STEPS],
                        help="--vs-one-batch: steps of the later micro-batches (several: one micro-batched run each)")
    parser.add_argument("--repeats", type=int, default=1, help="--vs-one-batch: interleaved timings of each path (medians)")
    args = parser.parse_args()
    (stability if args.stability else vs_one_batch if args.vs_one_batch else benchmark)(args)


if __name__ == "__main__":
    main()
