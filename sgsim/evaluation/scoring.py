"""Classification protocols on frozen embeddings: zero-shot and linear probe, scored top-1/top-5 per held-out fold.

Both protocols give a score matrix [N clips, K classes] in which each clip was scored by a classifier
that never saw its fold; `score_by_fold` turns any such matrix into per-fold and averaged accuracy
(docs/reference.md#evaluation-protocol: top-1 per official fold, averaged; top-5 too) and a per-class confusion summary.
"""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import torch

from sgsim.errors import SgsimError

NO_FOLDS = 5  # datasets without official folds are split into this many folds, by clip order


@dataclass
class FoldScore:
    """Accuracy on one held-out fold."""

    fold: int
    clips: int
    top1: float  # percent
    top5: float  # percent


@dataclass
class ProtocolResult:
    """One protocol's accuracy per fold, its fold average and which classes it confuses."""

    protocol: str  # "zero-shot", "linear-probe" or "supervised"
    folds: list[FoldScore]
    top1: float  # mean over folds, percent
    top5: float
    confusion: dict[str, dict] = field(default_factory=dict)


def evaluation_folds(folds: list[int | None]) -> list[int]:
    """The official fold of each clip; clips without one are dealt round-robin into NO_FOLDS folds."""
    if all(fold is not None for fold in folds):
        return list(folds)
    return [1 + position % NO_FOLDS for position in range(len(folds))]


def zero_shot_scores(embeddings: torch.Tensor, class_embeddings: torch.Tensor) -> torch.Tensor:
    """[N, K] cosine similarity of unit audio embeddings to unit class text embeddings."""
    if embeddings.shape[-1] != class_embeddings.shape[-1]:
        raise SgsimError(
            f"audio embeddings are {embeddings.shape[-1]}-d but the text embeddings are {class_embeddings.shape[-1]}-d: "
            f"the encoder and the CLIP model live in different spaces"
        )
    return embeddings.float() @ class_embeddings.float().T


def linear_probe_scores(
    embeddings: torch.Tensor, labels: torch.Tensor, folds: list[int], num_classes: int, regularisation: float = 1.0, seed: int = 0
) -> torch.Tensor:
    """[N, K] class probabilities from a logistic regression trained, for each fold, on all the other folds.

    Classes absent from a fold's training data get probability 0 (a held-out clip of such a class
    is necessarily wrong); a fold whose training data has a single class predicts it with certainty.
    """
    from sklearn.linear_model import LogisticRegression

    features, targets, fold_of = embeddings.double().numpy(), labels.numpy(), np.asarray(folds)
    scores = np.zeros((len(targets), num_classes))
    for fold in sorted(set(folds)):
        held_out, train = fold_of == fold, fold_of != fold
        seen = np.unique(targets[train])
        if len(seen) == 0:
            continue
        if len(seen) == 1:
            scores[np.ix_(held_out, seen)] = 1.0
            continue
        model = LogisticRegression(C=regularisation, max_iter=2000, random_state=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # sklearn's "many classes, few samples" hint on small datasets
            model.fit(features[train], targets[train])
        scores[np.ix_(held_out, model.classes_)] = model.predict_proba(features[held_out])
    return torch.from_numpy(scores)


def top_k_hits(scores: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """[N] bool: the true class is among the k best scores (ties broken towards the lower class index)."""
    k = min(k, scores.shape[1])
    return (scores.topk(k, dim=1).indices == labels[:, None]).any(dim=1)


def confusion_summary(scores: torch.Tensor, labels: torch.Tensor, classes: list[str], most: int = 3) -> dict[str, dict]:
    """Per class: clips, top-1 accuracy and the classes its clips are most often mistaken for."""
    predicted = scores.argmax(dim=1)
    summary = {}
    for index, name in enumerate(classes):
        mine = labels == index
        if not mine.any():
            continue
        wrong = Counter(classes[p] for p in predicted[mine & (predicted != index)].tolist())
        summary[name] = {
            "clips": int(mine.sum()),
            "top1": 100.0 * float((predicted[mine] == index).float().mean()),
            "mistaken_for": [[other, count] for other, count in wrong.most_common(most)],
        }
    return summary


def score_by_fold(protocol: str, scores: torch.Tensor, labels: torch.Tensor, folds: list[int], classes: list[str]) -> ProtocolResult:
    """Top-1 and top-5 accuracy per fold and their unweighted mean over folds."""
    fold_of = torch.tensor(folds)
    top1, top5 = top_k_hits(scores, labels, 1), top_k_hits(scores, labels, 5)
    per_fold = []
    for fold in sorted(set(folds)):
        mine = fold_of == fold
        per_fold.append(
            FoldScore(fold, int(mine.sum()), 100.0 * float(top1[mine].float().mean()), 100.0 * float(top5[mine].float().mean()))
        )
    mean1 = sum(f.top1 for f in per_fold) / len(per_fold) if per_fold else float("nan")
    mean5 = sum(f.top5 for f in per_fold) / len(per_fold) if per_fold else float("nan")
    return ProtocolResult(protocol, per_fold, mean1, mean5, confusion_summary(scores, labels, classes))
