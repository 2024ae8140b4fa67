"""Train an SGSIM audio encoder into a frozen CLIP space: the published recipe with its bugs fixed, resumable bit for bit.

Every random draw of step s (crop offsets, text and SpecAugment) comes from generators seeded by
(seed, s), and the data order of epoch e from (seed, e), so the state to save is the step counter
beside the weights, optimiser and scheduler: a run resumed from any checkpoint repeats exactly what an
uninterrupted run of the same seed does.

Under torchrun each of N processes trains on its slice of every global batch (config.batch_size = N x the
per-process batch) with DistributedDataParallel: batch norm and the contrastive loss see the whole global batch
(sgsim.training.ddp) and every random draw is made for the global batch, so N processes train as one process with
that batch does (to float rounding), and a run resumes under another number of processes with the same global batch.
Rank 0 writes the checkpoints.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from encoders.registry import build_audio_encoder
from sgsim.atomic import atomic_output
from sgsim.audio import audio_duration, load_audio
from sgsim.datasets import AudioDataset
from sgsim.distributed import Rank
from sgsim.errors import AudioError, SgsimError
from sgsim.evaluation.embeddings import embed_sharded
from sgsim.evaluation.prompts import class_embeddings, class_text
from sgsim.evaluation.scoring import evaluation_folds, score_by_fold, zero_shot_scores
from sgsim.training.contrastive import LogitScale, symmetric_info_nce
from sgsim.outputs import RUN_RECORD, run_record
from sgsim.training.config import TrainConfig
from sgsim.training.ddp import ImageTower, gather_rows, synchronise_batch_norm
from sgsim.training.spec_augment import spec_augment
from sgsim.training.text_augment import augment_text

STATE_FILE = "last.pt"  # resumable training state
BEST_FILE = "best.pth"  # encoder weights (official key layout) of the best validation epoch
FINAL_FILE = "encoder.pth"  # encoder weights at the end of training
LOG_FILE = RUN_RECORD  # run.json, as every command writes: config, history, best accuracy, argv, versions, checksums
STATE_FORMAT = "sgsim-train-state-1"
# Settings that may change on resume: more epochs extend a run; the others never change its results.
RESUMABLE_CHANGES = ("epochs", "checkpoint_every", "workers")


class SpectrogramFrontEnd(Protocol):
    """The front end the trainer drives: waveform -> spectrogram (SpecAugmented there) -> fixed-size network input."""

    sample_rate: int
    hop_length: int
    frames: int  # spectrogram columns the network sees; training crops give exactly this many

    def log_mel(self, waveform: torch.Tensor) -> torch.Tensor: ...  # [B, T] -> [B, bands, columns]
    def fit_frames(self, spectrogram: torch.Tensor) -> torch.Tensor: ...  # -> [B, bands, frames]
    def to_image(self, spectrogram: torch.Tensor) -> torch.Tensor: ...  # -> the network's input


@runtime_checkable
class TrainableEncoder(Protocol):
    """What the trainer needs of an audio encoder (the SGSIM encoders have it): a spectrogram front end and the
    network after it, so SpecAugment can act between the two."""

    front_end: SpectrogramFrontEnd
    embed_dim: int

    def embed_image(self, image: torch.Tensor) -> torch.Tensor: ...  # network input -> unnormalised embeddings


@dataclass
class TrainResult:
    """Where the outputs are and what validation said."""

    out_dir: Path
    steps: int
    best_accuracy: float | None  # best validation zero-shot top-1 (%), None without a validation set
    history: list[dict]  # one entry per epoch: mean losses, lr, validation accuracy


def _generator(*numbers: int) -> torch.Generator:
    """A CPU generator seeded by a tuple of integers (seed, epoch or step, ...)."""
    seed = 0
    for number in numbers:
        seed = (seed * 1_000_003 + number + 1) % 2**63
    return torch.Generator().manual_seed(seed)


class _TrainingClips(Dataset):
    """Fixed-length waveform crops: a random window of long clips (seeded per epoch and clip), short ones zero-padded."""

    def __init__(self, dataset: AudioDataset, sample_rate: int, samples: int, seed: int):
        self.clips, self.sample_rate, self.samples, self.seed = dataset.clips, sample_rate, samples, seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor]:
        path = self.clips[index].path
        seconds = self.samples / self.sample_rate
        spare = max(0.0, audio_duration(path) - seconds)
        offset = spare * float(torch.rand((), generator=_generator(self.seed, self.epoch, index)))
        try:
            waveform, _ = load_audio(path, self.sample_rate, mono=True, offset=offset, duration=seconds)
        except AudioError as error:
            raise SgsimError(f"training clip {path} cannot be read ({error}); remove it from the dataset") from error
        waveform = np.pad(waveform[: self.samples], (0, max(0, self.samples - len(waveform))))
        return index, torch.from_numpy(waveform)


def train_val_split(dataset: AudioDataset, val_fold: int | None = None) -> tuple[AudioDataset, AudioDataset]:
    """Training and validation clips: VGGSound's own split, else one official fold held out (default: the last),
    else every fifth clip (the round-robin folds of sgsim.evaluation.scoring)."""
    clips = dataset.clips
    if val_fold is None and any(clip.split for clip in clips):
        held_out = [clip.split == "test" for clip in clips]
    else:
        folds = evaluation_folds([clip.fold for clip in clips])
        fold = max(folds) if val_fold is None else val_fold
        if fold not in folds:
            raise SgsimError(f"{dataset.root}: there is no fold {fold} to validate on (folds: {sorted(set(folds))})")
        held_out = [f == fold for f in folds]
    train = [clip for clip, out in zip(clips, held_out) if not out]
    val = [clip for clip, out in zip(clips, held_out) if out]
    return (AudioDataset(dataset.name, dataset.root, dataset.classes, train, dataset.problems),
            AudioDataset(dataset.name, dataset.root, dataset.classes, val))


class EncoderTrainer:
    """Owns the encoder, its optimiser and schedule, the frozen CLIP and the data; `run` trains and checkpoints.

    `rank`: this process's place under torchrun (its process group initialised); alone by default."""

    def __init__(self, config: TrainConfig, train: AudioDataset, clip, out_dir: str | Path, val: AudioDataset | None = None,
                 device: str | torch.device = "cpu", rank: Rank = Rank(), argv: list[str] | None = None):
        self.argv = argv  # the command line run.json records; None: sys.argv
        if len(train.clips) < max(2, config.batch_size):
            raise SgsimError(f"{train.root}: {len(train.clips)} training clips, fewer than one batch of {config.batch_size}; lower --batch-size")
        if config.batch_size % rank.world_size:
            raise SgsimError(f"the global batch of {config.batch_size} does not split over {rank.world_size} processes; "
                             f"pick a batch that {rank.world_size} divides")
        self.config, self.train, self.val, self.clip, self.rank = config, train, val, clip, rank
        self.share = config.batch_size // rank.world_size  # rows of each global batch this process trains on
        self.out_dir, self.device = Path(out_dir), torch.device(device)
        with torch.random.fork_rng(devices=[]):  # seeded initial weights without touching the caller's RNG
            torch.manual_seed(config.seed)
            self.encoder = build_audio_encoder(config.encoder)
        if not isinstance(self.encoder, TrainableEncoder):
            raise SgsimError(f"{config.encoder} cannot be trained here: it has no spectrogram front end and embed_image to train through")
        if config.front_end:  # the same front end class with other settings
            front = self.encoder.front_end
            self.encoder.front_end = type(front)(**{"sample_rate": front.sample_rate, **config.front_end})
        front = self.encoder.front_end
        self.encoder.to(self.device)
        self.network = ImageTower(self.encoder)  # what the optimiser moves, as one module (wrapped for DDP under torchrun)
        if rank.distributed:
            from torch.nn.parallel import DistributedDataParallel

            synchronise_batch_norm(self.encoder, self.device)
            # Buffers need no broadcast: synchronised batch norm keeps the running statistics equal on every rank.
            self.network = DistributedDataParallel(self.network, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                                                   broadcast_buffers=False)
        if clip.embed_dim != self.encoder.embed_dim:
            raise SgsimError(f"the CLIP model embeds in {clip.embed_dim}-d but {config.encoder} outputs {self.encoder.embed_dim}-d; pick the CLIP model of its space")
        self.scale = LogitScale(config.temperature, config.learn_temperature).to(self.device)
        self.optimiser = torch.optim.SGD(
            [
                {"params": list(self.encoder.parameters())},
                {"params": list(self.scale.parameters()), "weight_decay": 0.0},  # decay would drag the scale toward 1, as CLIP avoids
            ],
            lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay,
        )
        self.steps_per_epoch = len(train.clips) // config.batch_size
        self.schedule = torch.optim.lr_scheduler.CyclicLR(
            self.optimiser, base_lr=config.lr_min, max_lr=config.lr,
            step_size_up=max(1, round(config.cycle_epochs * self.steps_per_epoch / 2)), cycle_momentum=False,
        )
        self.samples = front.hop_length * (front.frames - 1)  # the waveform length that gives exactly `frames` columns
        self.clips = _TrainingClips(train, front.sample_rate, self.samples, config.seed)
        self.labels = [config.prompt.format(class_text(clip.label)) for clip in train.clips]
        self.text_cache: dict[str, torch.Tensor] = {}
        self.image_cache: dict[int, torch.Tensor] = {}
        self.step, self.best, self.history = 0, None, []
        self.epoch_sums: dict[str, float] = {}  # loss sums of the epoch in progress, for its history entry
        self.epoch_seconds = 0.0

    # --- checkpoints -------------------------------------------------------------------------------------------

    def _save(self, path: Path, content) -> None:
        """Write a file atomically; only rank 0 writes (the ranks hold the same weights)."""
        if self.rank.is_main:
            with atomic_output(path) as stream:
                torch.save(content, stream)

    def save_state(self) -> None:
        """The resumable state, written atomically to last.pt."""
        self._save(self.out_dir / STATE_FILE, {
            "format": STATE_FORMAT,
            "config": asdict(self.config),
            "step": self.step,
            "encoder": self.encoder.state_dict(),
            "log_scale": self.scale.log_scale.detach().cpu(),
            "optimiser": self.optimiser.state_dict(),
            "schedule": self.schedule.state_dict(),
            "best": self.best,
            "history": self.history,
            "epoch_sums": self.epoch_sums,
            "epoch_seconds": self.epoch_seconds,
        })

    def resume(self) -> bool:
        """Continue from last.pt in the output folder when there is one; False when starting afresh."""
        path = self.out_dir / STATE_FILE
        if not path.is_file():
            return False
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise SgsimError(f"{path} is not a training state of this version; move it away to start afresh")
        mine, defaults = asdict(self.config), asdict(TrainConfig())
        saved = {**defaults, **state["config"]}  # a setting added since the state was written had its default then
        changed = sorted(k for k in mine if k not in RESUMABLE_CHANGES and saved[k] != mine[k])
        if changed:
            differences = ", ".join(f"{k}={saved[k]!r} (now {mine[k]!r})" for k in changed)
            hint = " (batch_size is the global batch: --batch-size x processes)" if "batch_size" in changed else ""
            raise SgsimError(
                f"{path} was written with other settings ({differences}){hint}; "
                f"resume with the same settings or use another --out"
            )
        self.encoder.load_state_dict(state["encoder"])
        with torch.no_grad():
            self.scale.log_scale.copy_(state["log_scale"])
        self.optimiser.load_state_dict(state["optimiser"])
        self.schedule.load_state_dict(state["schedule"])
        self.step, self.best, self.history = state["step"], state["best"], state["history"]
        self.epoch_sums, self.epoch_seconds = state["epoch_sums"], state["epoch_seconds"]
        return True

    def save_weights(self, name: str) -> Path:
        """The encoder alone, in the released file's key layout (conv.*, feature_extractor.*), for load_audio_encoder."""
        path = self.out_dir / name
        self._save(path, {key: value.detach().cpu() for key, value in self.encoder.state_dict().items()})
        return path

    # --- one step ----------------------------------------------------------------------------------------------

    @torch.no_grad()
    def _texts(self, texts: list[str]) -> torch.Tensor:
        """CLIP text embeddings, each computed alone and cached: a text's vector must not depend on its batch-mates,
        or a resumed run (with an emptier cache) would see other numbers."""
        for text in texts:
            if text not in self.text_cache:
                self.text_cache[text] = self.clip.encode_text([text])[0].cpu()
        return torch.stack([self.text_cache[text] for text in texts]).to(self.device)

    @torch.no_grad()
    def _images(self, batch: list[int]) -> torch.Tensor | None:
        """CLIP image embeddings of the frames of this process's rows of a global batch, or None when any clip of
        the global batch has no frame (every rank decides alike)."""
        clips = self.train.clips
        if any(clips[i].image is None for i in batch):
            return None
        from sgsim.images import read_image

        indices = self._mine(batch)
        for i in indices:
            if i not in self.image_cache:
                self.image_cache[i] = self.clip.encode_image(read_image(clips[i].image, self.clip.image_size).to(self.device))[0].cpu()
        return torch.stack([self.image_cache[i] for i in indices]).to(self.device)

    def _mine(self, rows: list):
        """This process's slice of a global batch's rows (all of them when alone)."""
        first = self.rank.rank * self.share
        return rows[first:first + self.share]

    def _global(self, rows: torch.Tensor) -> torch.Tensor:
        """Every process's rows of a global batch, in order (differentiable); the rows themselves when alone."""
        return gather_rows(rows) if self.rank.distributed else rows

    def _losses(self, batch: list[int], waveform: torch.Tensor) -> dict[str, torch.Tensor]:
        """The losses of a global batch (`batch`: its clip indices), given the waveforms of this process's rows."""
        config, front = self.config, self.encoder.front_end
        generator = _generator(config.seed, self.step, 1)
        texts = [augment_text(self.labels[i], generator, config.text_augment) for i in batch]
        text_ids = {text: number for number, text in enumerate(dict.fromkeys(texts))}
        groups = torch.tensor([text_ids[text] for text in texts], device=self.device)
        log_mel = front.fit_frames(front.log_mel(waveform.to(self.device)))
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=config.amp and self.device.type == "cuda")
        with autocast:
            audio = self._global(self.network(front.to_image(log_mel)).float())
            scale = self.scale()
            text = self._global(self._texts(self._mine(texts)))
            losses = {"text": symmetric_info_nce(audio, text, scale, groups) * config.text_weight}
            if config.text_cosine:
                losses["text_cosine"] = (1 - F.cosine_similarity(audio, text, dim=-1)).mean() * config.text_cosine
            images = self._images(batch) if config.image_weight else None
            if images is not None:
                losses["image"] = symmetric_info_nce(audio, self._global(images), scale) * config.image_weight
            if config.audio_weight:
                masked = spec_augment(log_mel, generator, first=self.rank.rank * self.share, total=len(batch))
                augmented = self._global(self.network(front.to_image(masked)).float())
                losses["audio"] = symmetric_info_nce(audio, augmented, scale) * config.audio_weight
        return losses

    # --- the loop ----------------------------------------------------------------------------------------------

    def _epoch_batches(self, epoch: int, skip: int) -> list[list[int]]:
        """The batches of an epoch in its seeded order, without the first `skip` (already trained before a resume)."""
        order = torch.randperm(len(self.train.clips), generator=_generator(self.config.seed, epoch, 0)).tolist()
        size = self.config.batch_size
        return [order[b * size : (b + 1) * size] for b in range(skip, self.steps_per_epoch)]

    @torch.no_grad()
    def validate(self) -> float | None:
        """Zero-shot top-1 (%) on the validation clips with the training prompt, or None without them."""
        if self.val is None or not self.val.clips:
            return None
        self.encoder.eval()
        embedded = embed_sharded(self.encoder, self.val, None, batch_size=self.share, workers=self.config.workers)
        text = class_embeddings(self.clip, self.val.classes, (self.config.prompt,)).cpu()
        result = score_by_fold("zero-shot", zero_shot_scores(embedded.embeddings, text), embedded.labels, [0] * len(embedded.labels), self.val.classes)
        self.encoder.train()
        return result.top1

    def run(self, max_steps: int | None = None, progress: Callable[[int, dict[str, float]], None] | None = None) -> TrainResult:
        """Train to the configured epochs (or stop after `max_steps` steps in total, as an interruption would).

        Writes last.pt every `checkpoint_every` steps and at the end, best.pth whenever validation improves,
        encoder.pth and run.json at the end.
        """
        config = self.config
        self.out_dir.mkdir(parents=True, exist_ok=True)
        total = config.epochs * self.steps_per_epoch
        self.encoder.train()
        while self.step < total:
            epoch, skip = divmod(self.step, self.steps_per_epoch)
            self.clips.epoch = epoch
            batches = self._epoch_batches(epoch, skip)
            # The distributed sampler: this process loads its slice of each global batch of the epoch's seeded order.
            loader = DataLoader(self.clips, batch_sampler=[self._mine(batch) for batch in batches], num_workers=config.workers)
            for batch, (_, waveform) in zip(batches, loader):
                if max_steps is not None and self.step >= max_steps:
                    return TrainResult(self.out_dir, self.step, self.best, self.history)
                started = time.perf_counter()
                losses = self._losses(batch, waveform)
                loss = sum(losses.values())
                if not torch.isfinite(loss):
                    raise SgsimError(f"step {self.step}: the loss is {float(loss)}; lower --lr or check the data")
                self.optimiser.zero_grad(set_to_none=True)
                loss.backward()
                self.optimiser.step()
                self.schedule.step()
                self.step += 1
                values = {name: float(value.detach()) for name, value in losses.items()}
                for name, value in values.items():
                    self.epoch_sums[name] = self.epoch_sums.get(name, 0.0) + value
                self.epoch_seconds += time.perf_counter() - started
                if progress:
                    progress(self.step, {**values, "scale": float(self.scale().detach())})
                if self.step % self.steps_per_epoch == 0:
                    self._end_epoch(epoch)
                if self.step % config.checkpoint_every == 0 and self.step < total:
                    self.save_state()
        self.save_state()
        self.save_weights(FINAL_FILE)
        if self.rank.is_main:
            self.write_record()
        return TrainResult(self.out_dir, self.step, self.best, self.history)

    def write_record(self) -> None:
        """run.json: run_record's head (argv, versions), the config, the history, the best accuracy and the sha256 of
        the weights files written."""
        from sgsim.checksums import sha256_file
        from sgsim.outputs import write_json

        written = [name for name in (FINAL_FILE, BEST_FILE) if (self.out_dir / name).is_file()]
        write_json(self.out_dir / LOG_FILE, run_record(
            "train-encoder", self.argv, config=asdict(self.config), history=self.history, best_accuracy=self.best,
            outputs={name: {"sha256": sha256_file(self.out_dir / name)} for name in written},
        ))

    def _end_epoch(self, epoch: int) -> None:
        """Validate, keep the best weights, record the epoch."""
        accuracy = self.validate()
        if accuracy is not None and (self.best is None or accuracy > self.best):
            self.best = accuracy
            self.save_weights(BEST_FILE)
        self.history.append({
            "epoch": epoch + 1,
            "losses": {name: total / self.steps_per_epoch for name, total in self.epoch_sums.items()},
            "lr": self.schedule.get_last_lr()[0],
            "logit_scale": float(self.scale().detach()),
            "val_top1": accuracy,
            "train_seconds": self.epoch_seconds,
        })
        self.epoch_sums, self.epoch_seconds = {}, 0.0
