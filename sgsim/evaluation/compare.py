"""Compare audio encoders on labelled datasets: zero-shot and linear-probe accuracy per fold, for every encoder and dataset."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

import checkpoints
from checkpoints.errors import WeightsError
from encoders import available, load_audio_encoder, load_clip_for
from encoders.errors import EncoderError
from sgsim.datasets import AudioDataset, Problem
from sgsim.checksums import state_sha256
from sgsim.evaluation.embeddings import EmbeddingCache, embed_sharded
from sgsim.evaluation.prompts import class_embeddings, templates_for
from sgsim.evaluation.scoring import ProtocolResult, evaluation_folds, linear_probe_scores, score_by_fold, zero_shot_scores
from sgsim.evaluation.supervised import BASELINE_NAME, SupervisedConfig, network_inputs, supervised_scores
from sgsim.outputs import unique


@dataclass(frozen=True)
class EncoderChoice:
    """An encoder to evaluate: its registry name, its weights file (None: the released ones), its CLIP weights and
    the label its rows carry in the reports (unique within a comparison)."""

    name: str
    checkpoint: Path | None = None
    clip: str | None = None  # CLIP weights (path or manifest name); None: the encoder's own clip_weights
    label: str | None = None  # None: the registry name

    @property
    def shown(self) -> str:
        """The name this encoder's rows carry in the reports."""
        return self.label or self.name


@dataclass
class DatasetResult:
    """One encoder on one dataset."""

    encoder: str
    dataset: str  # the dataset's folder name, as the user knows it
    layout: str  # "esc50", "urbansound8k", ...: the key of the paper's numbers
    clips: int  # clips evaluated
    problems: list[Problem]  # clips left out, with the reason
    protocols: list[ProtocolResult]
    encoded: int  # clips run through the encoder (the rest came from the cache)
    seconds: float  # wall time of embedding and scoring
    model: str = ""  # the registry name behind `encoder` (which may be a user's label): matches the paper's rows


@dataclass
class Comparison:
    """Everything a compare-encoders run measured, and the encoders it could not run."""

    results: list[DatasetResult] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (encoder name, reason)
    prompts: str = "sound"
    precision: str = "fp32"  # of the audio embeddings (EMBEDDING_PRECISIONS)


def _weights_missing(weights: str | None) -> str | None:
    """Why an encoder's released weights cannot be used, or None when they are in the cache."""
    if weights is None:
        return "no published weights; pass --encoder NAME=CHECKPOINT"
    try:
        checkpoints.resolve(weights)
    except WeightsError as error:
        return str(error)
    return None


def default_choices() -> tuple[list[EncoderChoice], list[tuple[str, str]]]:
    """Every registered encoder whose released weights are in the cache, and a reason for each of the others."""
    chosen, skipped = [], []
    for info in available():
        reason = _weights_missing(info.weights)
        if reason is None:
            chosen.append(EncoderChoice(info.name))
        else:
            skipped.append((info.name, reason))
    return chosen, skipped


def evaluate_encoder(
    encoder,
    clip,
    dataset: AudioDataset,
    prompts: str = "sound",
    linear_probe: bool = True,
    cache_root: str | Path | None = None,
    batch_size: int = 32,
    workers: int = 2,
    progress: Callable[[int], None] | None = None,
    precision: str = "fp32",
) -> DatasetResult:
    """Zero-shot (and linear-probe) accuracy of one loaded encoder on one dataset, per fold and averaged, with the clips
    embedded at `precision`; under torchrun they are embedded sharded over the processes and merged (every process
    then scores them alike)."""
    start = time.perf_counter()
    embedded = embed_sharded(encoder, dataset, cache_root, batch_size, workers, progress, precision)
    folds = evaluation_folds(embedded.folds)
    protocols = []
    if len(embedded.labels):
        # Keyed by the CLIP weights alone: text embeddings depend on nothing else (and a hand-built encoder has no registry entry).
        text_cache = EmbeddingCache(cache_root, "text", state_sha256(clip.model)) if cache_root is not None else None
        text = class_embeddings(clip, dataset.classes, templates_for(prompts), text_cache)
        scores = zero_shot_scores(embedded.embeddings, text)
        protocols.append(score_by_fold("zero-shot", scores, embedded.labels, folds, dataset.classes))
        if linear_probe and len(set(folds)) > 1:
            scores = linear_probe_scores(embedded.embeddings, embedded.labels, folds, len(dataset.classes))
            protocols.append(score_by_fold("linear-probe", scores, embedded.labels, folds, dataset.classes))
    return DatasetResult(
        encoder=encoder.name,
        dataset=dataset.root.name,
        layout=dataset.name,
        clips=len(embedded.labels),
        problems=embedded.problems,
        protocols=protocols,
        encoded=embedded.encoded,
        seconds=time.perf_counter() - start,
        model=encoder.name,
    )


def evaluate_supervised(
    dataset: AudioDataset,
    config: SupervisedConfig,
    device: str | torch.device = "cpu",
    progress: Callable[[int], None] | None = None,
) -> DatasetResult:
    """The supervised log-mel ResNet baseline on one dataset, trained on the other folds for each held-out fold."""
    from encoders.sgsim_encoder import LogMelFrontEnd

    start = time.perf_counter()
    device = torch.device(device)
    images, kept, problems = network_inputs(dataset, LogMelFrontEnd(**config.front_end).to(device), device)
    clips = [dataset.clips[i] for i in kept]
    labels = torch.tensor([dataset.class_index(clip.label) for clip in clips], dtype=torch.long)
    folds = evaluation_folds([clip.fold for clip in clips])
    protocols = []
    if len(set(folds)) > 1:
        scores = supervised_scores(images, labels, folds, len(dataset.classes), config, device, progress)
        protocols.append(score_by_fold("supervised", scores, labels, folds, dataset.classes))
    name = BASELINE_NAME if config.backbone == "resnet50" else f"{config.backbone}-supervised"
    return DatasetResult(name, dataset.root.name, dataset.name, len(clips), dataset.problems + problems, protocols,
                         encoded=len(clips), seconds=time.perf_counter() - start, model=name)


def dataset_labels(datasets: list[AudioDataset]) -> list[str]:
    """Each dataset's name in progress bars and reports: its folder's name, with the parent folder's when two
    datasets' folders share a name (two `audio` folders must not read alike)."""
    names = [dataset.root.name for dataset in datasets]
    return unique([name if names.count(name) == 1 else f"{dataset.root.parent.name}/{name}" for dataset, name in zip(datasets, names)],
                  " #")


def compare_encoders(
    choices: list[EncoderChoice],
    datasets: list[AudioDataset],
    prompts: str = "sound",
    linear_probe: bool = True,
    cache_root: str | Path | None = None,
    device: str | torch.device = "cpu",
    batch_size: int = 32,
    workers: int = 2,
    progress_factory: Callable[[str, int], Callable[[int], None]] | None = None,
    supervised: SupervisedConfig | None = None,
    precision: str = "fp32",
) -> Comparison:
    """Run every chosen encoder (and, given `supervised`, the supervised baseline) on every dataset, embedding the
    clips at `precision` (EMBEDDING_PRECISIONS).

    An encoder that cannot be loaded is skipped with its reason. `progress_factory(description, total)`
    returns the progress callback of one encoder on one dataset.
    """
    templates_for(prompts)  # an unknown prompt set fails before any model loads
    comparison = Comparison(prompts=prompts, precision=precision)
    labels = dataset_labels(datasets)
    for choice in choices:
        try:
            encoder = load_audio_encoder(choice.name, checkpoint=choice.checkpoint, device=device)
            clip = load_clip_for(encoder, choice.clip, device)
        except (EncoderError, WeightsError) as error:
            comparison.skipped.append((choice.shown, str(error)))
            continue
        for dataset, label in zip(datasets, labels):
            progress = progress_factory(f"{choice.shown} on {label}", len(dataset.clips)) if progress_factory else None
            result = evaluate_encoder(encoder, clip, dataset, prompts, linear_probe, cache_root, batch_size, workers, progress, precision)
            result.encoder, result.model, result.dataset = choice.shown, choice.name, label
            comparison.results.append(result)
        del encoder, clip
    if supervised is not None:
        for dataset, label in zip(datasets, labels):
            progress = progress_factory(f"supervised {supervised.backbone} on {label}", len(dataset.clips)) if progress_factory else None
            result = evaluate_supervised(dataset, supervised, device, progress)
            result.dataset = label
            comparison.results.append(result)
    return comparison
