"""The paper's supervised baseline: a ResNet on the SGSIM log-mel input, trained from scratch on the other folds.

Each clip's network input is computed once (the SGSIM front end, batched on the device) and kept as
float16, so training per fold touches no audio; the result is a score matrix like the other protocols.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from encoders.sgsim_encoder import LogMelFrontEnd, build_backbone
from sgsim.audio import load_centred_window
from sgsim.datasets import AudioDataset, Problem
from sgsim.errors import AudioError

BASELINE_NAME = "resnet50-supervised"


@dataclass
class SupervisedConfig:
    """Training settings of the baseline (the paper gives none beyond the architecture; these are ours)."""

    backbone: str = "resnet50"
    epochs: int = 30
    batch_size: int = 32
    lr: float = 1e-3  # Adam
    weight_decay: float = 1e-4
    seed: int = 0
    front_end: dict = field(default_factory=dict)  # LogMelFrontEnd overrides; {} = the SGSIM preprocessing


class LogMelClassifier(nn.Module):
    """Conv2d(1, 3, 3x3) -> ResNet -> class logits, on the SGSIM front end's output."""

    def __init__(self, backbone: str, num_classes: int):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, kernel_size=3)
        self.backbone = build_backbone(backbone, num_classes)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.conv(image))


@torch.no_grad()
def network_inputs(dataset: AudioDataset, front_end: LogMelFrontEnd, device: torch.device) -> tuple[torch.Tensor, list[int], list[Problem]]:
    """The front end's image of every readable clip (centred window, float16 on the CPU), their positions and the problems."""
    seconds = front_end.frames * front_end.hop_length / front_end.sample_rate
    images, kept, problems = [], [], []
    for position, clip in enumerate(dataset.clips):
        try:
            waveform = load_centred_window(clip.path, front_end.sample_rate, True, seconds)
        except AudioError as error:
            problems.append(Problem(str(clip.path), str(error)))
            continue
        if len(waveform) < front_end.min_samples:
            problems.append(Problem(str(clip.path), f"{len(waveform)} samples, too short for the log-mel front end"))
            continue
        images.append(front_end(torch.from_numpy(np.ascontiguousarray(waveform))[None].to(device)).half().cpu())
        kept.append(position)
    return (torch.cat(images) if images else torch.zeros(0)), kept, problems


@torch.no_grad()
def recompute_batch_norm_statistics(model: nn.Module, images: torch.Tensor, batch_size: int, device: torch.device) -> None:
    """Replace the running batch-norm statistics by exact averages over the training images ("precise BN").

    The running averages lag the weights by their momentum; after a short training on a small dataset
    they are far from the final network's statistics, and evaluation mode then scores garbage.
    """
    norms = [module for module in model.modules() if isinstance(module, nn.modules.batchnorm._BatchNorm)]
    momenta = [norm.momentum for norm in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average over the batches below
    model.train()
    for start in range(0, len(images), batch_size):
        model(images[start : start + batch_size].to(device).float())
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum


def supervised_scores(
    images: torch.Tensor, labels: torch.Tensor, folds: list[int], num_classes: int, config: SupervisedConfig,
    device: torch.device, progress: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """[N, K] softmax scores, each clip scored by a classifier trained from scratch on every other fold.

    Under torchrun each process trains its share of the folds (each seeded by its fold alone, so which process
    trains it does not matter) and the held-out scores are merged on every process."""
    from sgsim.distributed import current_rank, gather_objects, shard

    fold_of = torch.tensor(folds)
    scores = torch.zeros(len(labels), num_classes)
    scored = 0
    for fold in shard(sorted(set(folds)), current_rank()):
        train = torch.nonzero(fold_of != fold).flatten()
        held_out = torch.nonzero(fold_of == fold).flatten()
        torch.manual_seed(config.seed + fold)
        model = LogMelClassifier(config.backbone, num_classes).to(device)
        optimiser = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        generator = torch.Generator().manual_seed(config.seed + fold)
        model.train()
        for _ in range(config.epochs):
            order = train[torch.randperm(len(train), generator=generator)]
            for start in range(0, len(order), config.batch_size):
                batch = order[start : start + config.batch_size]
                if len(batch) < 2:  # batch norm needs two samples
                    continue
                loss = F.cross_entropy(model(images[batch].to(device).float()), labels[batch].to(device))
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
        recompute_batch_norm_statistics(model, images[train], config.batch_size, device)
        model.eval()
        with torch.no_grad():
            for start in range(0, len(held_out), config.batch_size):
                batch = held_out[start : start + config.batch_size]
                scores[batch] = model(images[batch].to(device).float()).softmax(dim=1).cpu()
        scored += len(held_out)
        if progress:
            progress(len(held_out))
    merged = torch.stack(gather_objects(scores)).sum(0)  # every row was scored by one process, zeros elsewhere
    if progress and scored < len(labels):
        progress(len(labels) - scored)  # the other processes' folds
    return merged
