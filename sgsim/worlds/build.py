"""`sgsim world build shapes`: every network of the shapes world trained from nothing, in resumable stages.

Stages run in order (speech, generator, style_encoder, clip, encoder); each writes its final file atomically and its
metrics into run.json, and is skipped when both are there (the style encoder also only while it was trained against
the generator on disk, so a replaced generator gets its encoder retrained by the same command). A stage killed midway
resumes from its checkpoint under work/. The same seed and scale give the same world.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch

from sgsim.atomic import atomic_output
from sgsim.worlds import ENCODER_FILE, ENCODER_NAME, WorldFiles, register_world, world_files
from sgsim.worlds.clip_training import ClipConfig
from sgsim.worlds.e4e_training import E4eConfig
from sgsim.worlds.gan_training import GanConfig
from sgsim.worlds.shapes import RANGES, RenderRanges, render_random
from sgsim.worlds.speech import SCALES as SPEECH_SCALES, SpeechScale

RUN_FILE = "run.json"
DATASET = "sgsim shapes world"  # the training set the generator's file names: sgsim picks the world's preset by it
STAGES = ("speech", "generator", "style_encoder", "clip", "encoder")


@dataclass
class BuildScale:
    """The size of every stage; `full` is chosen to fit about two hours on two CPU cores."""

    speech: SpeechScale
    gan: GanConfig
    clip: ClipConfig
    e4e: E4eConfig  # the photo encoder (style_encoder stage)
    encoder_epochs: int
    encoder_batch: int
    metric_images: int  # renders judged / classified for run.json
    extras: dict = field(default_factory=dict)


SCALES = {
    "toy": BuildScale(SPEECH_SCALES["toy"], GanConfig(steps=2, batch_size=8, z_dim=16, w_dim=16, channel_base=256, channel_max=16, checkpoint_every=1),
                      ClipConfig(steps=2, batch_size=16, warmup=1, checkpoint_every=1),
                      E4eConfig(steps=2, batch_size=2, stem_channels=8, stages=((8, 1), (12, 1), (16, 1)), checkpoint_every=1),
                      encoder_epochs=1, encoder_batch=4, metric_images=48),
    "full": BuildScale(SPEECH_SCALES["full"], GanConfig(steps=4000, batch_size=32), ClipConfig(steps=1200, batch_size=128),
                       E4eConfig(), encoder_epochs=8, encoder_batch=32, metric_images=1000),
}

Progress = Callable[[str, int, int, dict], None]  # stage, done, total, latest values


class WorldBuild:
    """One build into `out`: its files, its run record, and a method per stage."""

    def __init__(self, out: str | Path, seed: int = 0, scale: str = "full", progress: Progress | None = None):
        self.out, self.seed, self.scale_name, self.scale = Path(out), seed, scale, SCALES[scale]
        self.files: WorldFiles = world_files(self.out)
        self.work = self.out / "work"
        self.progress = progress or (lambda stage, done, total, values: None)
        self.record = self._read_record()

    def _read_record(self) -> dict:
        path = self.out / RUN_FILE
        record = json.loads(path.read_text()) if path.is_file() else {}
        if record and (record.get("seed"), record.get("scale")) != (self.seed, self.scale_name):
            from sgsim.errors import SgsimError

            raise SgsimError(f"{path} records seed {record.get('seed')} at scale {record.get('scale')!r}; "
                             f"build with the same --seed and --scale, or into another --out")
        return record or {"world": "shapes", "seed": self.seed, "scale": self.scale_name, "stages": {}}

    def _finish(self, stage: str, metrics: dict, seconds: float) -> None:
        self.record["stages"][stage] = {"seconds": round(seconds, 1), **metrics}
        with atomic_output(self.out / RUN_FILE) as stream:
            stream.write(json.dumps(self.record, indent=2).encode())

    def done(self, stage: str) -> bool:
        """A stage is complete when run.json has its metrics and its output is on disk; the style encoder's, when it
        was also trained against the generator on disk."""
        outputs = {"speech": self.out / "speech" / "test.csv", "generator": self.files.generator,
                   "style_encoder": self.files.style_encoder, "clip": self.files.clip, "encoder": self.files.encoder}
        if stage not in self.record["stages"] or not outputs[stage].exists():
            return False
        trained_for = self.record["stages"][stage].get("config", {}).get("generator_sha256")
        return stage != "style_encoder" or trained_for == self._generator_sha256()

    def _generator_sha256(self) -> str:
        from sgsim.style_encoder_file import generator_sha256
        from stylegan2 import load_generator

        return generator_sha256(load_generator(self.files.generator))

    def run(self) -> dict:
        """Every stage not yet complete, in order; returns the run record. The example sounds are written again only
        after a new speech stage (or when missing), so a shipped world, whose speech/ keeps only held-out FLAC clips,
        can be rebuilt in place: `sgsim world build shapes --out examples/worlds/shapes` after its generator changed."""
        from sgsim.worlds.checks import SEQUENCE_SPANS

        self.out.mkdir(parents=True, exist_ok=True)
        ran = [stage for stage in STAGES if not self.done(stage)]
        for stage in ran:
            started = time.perf_counter()
            metrics = getattr(self, f"build_{stage}")()
            self._finish(stage, metrics, time.perf_counter() - started)
        store_compact(self.files)
        if "speech" in ran or not (self.files.audio / SEQUENCE_SPANS).is_file():
            write_examples(self.files, self.record["stages"]["speech"]["sequence"])
        shutil.rmtree(self.work, ignore_errors=True)
        return self.record

    def build_speech(self) -> dict:
        from sgsim.worlds.speech import write_dataset

        staging, final = self.work / "speech", self.out / "speech"
        summary = write_dataset(staging, self.seed, self.scale.speech, lambda done, total: self.progress("speech", done, total, {}))
        shutil.rmtree(final, ignore_errors=True)
        staging.rename(final)
        return {"clips": {split: info["count"] for split, info in summary["clips"].items()},
                "voices": {split: info["voices"] for split, info in summary["clips"].items()}, "sequence": summary["sequence"]}

    def build_generator(self) -> dict:
        from sgsim.worlds.gan_training import GanTrainer
        from sgsim.worlds.metrics import generator_metrics
        from sgsim.worlds.shapes import RESOLUTION
        from stylegan2 import save_generator

        config = GanConfig(**{**asdict(self.scale.gan), "seed": self.seed})
        trainer = GanTrainer(config, generator_reals(self.seed), RESOLUTION, self.work / "gan_state.pt")
        trainer.resume()
        G_ema = trainer.run(lambda step, total, values: self.progress("generator", step, total, values))
        save_generator(G_ema, self.files.generator)
        return {"config": asdict(config), "train_seconds": round(trainer.seconds, 1), "history": trainer.history[-5:],
                "judge": generator_metrics(G_ema, self.scale.metric_images, seed=self.seed)}

    def build_style_encoder(self) -> dict:
        """The e4e photo encoder of the generator on disk (sgsim.worlds.e4e_training), written in the authors' format
        and measured through their loader on held-out renders, against the mean latent's picture as a baseline."""
        from sgsim.style_encoder_file import read_style_encoder
        from sgsim.worlds.e4e_training import E4eTrainer
        from sgsim.worlds.metrics import held_out_photos, photo_reconstruction
        from sgsim.worlds.shapes import render_random
        from stylegan2 import load_generator

        G = load_generator(self.files.generator)
        config = E4eConfig(**{**asdict(self.scale.e4e), "seed": self.seed})
        trainer = E4eTrainer(config, G, lambda count, seed: render_random(count, seed)[0], self.work / "e4e_state.pt")
        trainer.resume()
        trainer.run(lambda step, total, values: self.progress("style_encoder", step, total, values))
        trainer.write(self.files.style_encoder, {"sgsim_world": self.files.name})
        loaded = read_style_encoder(self.files.style_encoder, G)
        photos, scene = held_out_photos(min(self.scale.metric_images, 500))
        with torch.no_grad():
            codes = loaded.encoder.codes(photos, loaded.latent_avg)
            rebuilt = G.synthesis(codes, noise_mode="const")
            mean = G.synthesis(loaded.latent_avg.expand(len(photos), -1, -1), noise_mode="const")
        return {"config": asdict(trainer.config), "train_seconds": round(trainer.seconds, 1), "history": trainer.history[-5:],
                "held_out_renders": photo_reconstruction(photos, scene, rebuilt),
                "mean_latent_baseline": photo_reconstruction(photos, scene, mean)}

    def build_clip(self) -> dict:
        from safetensors.torch import save

        from encoders.clip import ClipModel
        from sgsim.worlds.clip_training import ClipTrainer
        from sgsim.worlds.metrics import clip_zero_shot

        config = ClipConfig(**{**asdict(self.scale.clip), "seed": self.seed})
        trainer = ClipTrainer(config, self.work / "clip_state.pt")
        trainer.resume()
        model = trainer.run(lambda step, total, values: self.progress("clip", step, total, values))
        tensors = {key: value.detach().contiguous().clone() for key, value in model.state_dict().items()}
        with atomic_output(self.files.clip) as stream:
            stream.write(save(tensors, metadata={"format": "sgsim-world-clip", "open_clip_model": self.files.clip_model}))
        return {"config": asdict(config), "train_seconds": round(trainer.seconds, 1), "history": trainer.history[-5:],
                "zero_shot": clip_zero_shot(ClipModel.from_open_clip(model), self.scale.metric_images)}

    def build_encoder(self) -> dict:
        from encoders.clip import load_clip
        from encoders.registry import load_audio_encoder
        from sgsim.datasets import open_dataset
        from sgsim.training.config import TrainConfig
        from sgsim.training.trainer import FINAL_FILE, EncoderTrainer, train_val_split
        from sgsim.worlds.metrics import encoder_zero_shot

        register_world()
        clip = load_clip(self.files.clip_model, pretrained=self.files.clip)
        train, val = train_val_split(open_dataset(self.out / "speech" / "train.csv"))
        config = TrainConfig(encoder=ENCODER_NAME, epochs=self.scale.encoder_epochs, batch_size=self.scale.encoder_batch,
                             seed=self.seed, workers=0, checkpoint_every=50, text_augment=0.0)
        trainer = EncoderTrainer(config, train, clip, self.work / "encoder", val)
        trainer.resume()
        total = config.epochs * trainer.steps_per_epoch
        result = trainer.run(progress=lambda step, values: self.progress("encoder", step, total, values))
        shutil.copyfile(result.out_dir / FINAL_FILE, self.work / ENCODER_FILE)
        (self.work / ENCODER_FILE).replace(self.files.encoder)
        encoder = load_audio_encoder(ENCODER_NAME, checkpoint=self.files.encoder)
        held_out = open_dataset(self.out / "speech" / "test.csv")
        return {"config": asdict(config), "best_validation_top1": result.best_accuracy,
                "held_out_voices": encoder_zero_shot(encoder, clip, held_out)}


def generator_reals(seed: int, ranges: RenderRanges = RANGES) -> Callable[[int, int], torch.Tensor]:
    """The generator stage's real pictures: (count, step) -> renders from seeds the CLIP and the metrics never draw."""
    first = 10**9 + seed * 10**7

    def reals(count: int, step: int) -> torch.Tensor:
        return render_random(count, first + step, ranges)[0]

    return reals


def store_compact(files: WorldFiles) -> None:
    """The world as it ships: CLIP and audio encoder weights stored in float16 (half the bytes; the loaders cast them to
    float32), the generator's file naming its training set. Idempotent, so a finished build can be rerun to apply it."""
    from safetensors.torch import load_file, save
    from safetensors import safe_open

    from stylegan2 import load_generator, save_generator

    def halved(tensors: dict) -> dict:
        return {k: v.half().contiguous() if v.is_floating_point() else v.contiguous() for k, v in tensors.items()}

    G = load_generator(files.generator)
    if G.metadata.get("dataset") != DATASET:
        G.metadata = {**G.metadata, "dataset": DATASET}
        save_generator(G, files.generator)
    with safe_open(str(files.clip), framework="pt") as stream:
        metadata = stream.metadata()
    tensors = load_file(files.clip)
    if any(v.dtype == torch.float32 for v in tensors.values()):
        with atomic_output(files.clip) as stream:
            stream.write(save(halved(tensors), metadata=metadata))
    state = torch.load(files.encoder, map_location="cpu", weights_only=True)
    if any(v.dtype == torch.float32 for v in state.values()):
        with atomic_output(files.encoder) as stream:
            torch.save(halved(state), stream)


def write_examples(files: WorldFiles, sequence: list[dict]) -> None:
    """The world's example sounds (files.audio, what `sgsim reproduce world-shapes`, bench_world and the tests read):
    each word said by the first held-out voice, and the spoken sequence with its word spans, as FLAC. Idempotent."""
    import csv

    from sgsim.worlds.checks import SEQUENCE_FILE, SEQUENCE_SPANS, WORD_FILE
    from sgsim.worlds.speech import to_flac

    speech = files.root / "speech"
    with open(speech / "test.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    voice = min(row["voice"] for row in rows)
    for row in rows:
        if row["voice"] == voice:
            to_flac(speech / row["path"], files.audio / WORD_FILE.format(row["label"]))
    to_flac(speech / "sequence.wav", files.audio / SEQUENCE_FILE)
    with atomic_output(files.audio / SEQUENCE_SPANS) as stream:
        stream.write((json.dumps(sequence, indent=2) + "\n").encode())
