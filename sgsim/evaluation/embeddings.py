"""Embed every clip of a dataset with an audio encoder: parallel decoding, batched encoding, an on-disk cache.

The cache key of a clip is (file content sha256, encoder name, weights sha256, precision), so renaming a file
costs nothing, changing a file or the weights re-encodes exactly what changed, and a bf16 embedding is never
served for an fp32 request. Clips whose file cannot be decoded or encoded are reported as problems and left out.
"""

from __future__ import annotations

import copy
import io
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.fx.experimental.optimization import fuse as fold_batch_norms
from torch.utils.data import DataLoader, Dataset

from encoders.base import AudioEncoder
from encoders.errors import EncoderError
from sgsim.atomic import atomic_output
from sgsim.checksums import sha256_file, state_sha256
from sgsim.audio import load_centred_window
from sgsim.datasets import AudioDataset, Problem, not_a_clip
from sgsim.devices import choose_precision
from sgsim.errors import AudioError
from sgsim.host_memory import freed_memory_kept

# The precisions an encoder can embed at. fp32 is the default because accuracy tables are compared across machines;
# bf16 (the encoder's network under bfloat16 autocast, its front end in fp32) is opt-in, for CPUs with native
# bfloat16 (AVX512-BF16, AMX) and GPUs. Its tolerance on the real test clips: every embedding within cosine 0.999 of
# fp32's and nearer its own clip's fp32 embedding than any other clip's, the same zero-shot results
# (tests/sgsim/evaluation/test_embeddings.py and test_cli_compare_encoders.py; docs/performance.md#evaluation-throughput).
EMBEDDING_PRECISIONS = ("fp32", "bf16")


class EmbeddingCache:
    """One `.npy` per (encoder, weights, precision, file content) under `root/{encoder}-{weights hash}/{content hash}.npy`,
    with `-{precision}` after the weights hash for any precision but fp32 (so the fp32 caches of earlier runs stay valid)."""

    def __init__(self, root: str | Path, encoder_name: str, weights_hash: str, precision: str = "fp32"):
        variant = "" if precision == "fp32" else f"-{precision}"
        self.folder = Path(root) / f"{encoder_name}-{weights_hash[:16]}{variant}"

    def _path(self, content_hash: str) -> Path:
        return self.folder / f"{content_hash}.npy"

    def get(self, content_hash: str) -> np.ndarray | None:
        """The cached embedding of a file content, or None (also for a damaged entry, which is recomputed)."""
        path = self._path(content_hash)
        if not path.is_file():
            return None
        try:
            return np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError):
            return None

    def put(self, content_hash: str, embedding: np.ndarray) -> None:
        """Store an embedding atomically, so a killed run never leaves half an entry."""
        buffer = io.BytesIO()
        np.save(buffer, np.asarray(embedding, dtype=np.float32), allow_pickle=False)
        with atomic_output(self._path(content_hash)) as stream:
            stream.write(buffer.getvalue())


@dataclass
class EmbeddedDataset:
    """Unit embeddings of the clips that could be used, aligned with their class index and fold."""

    embeddings: torch.Tensor  # [N, D] float32, L2-normalised
    labels: torch.Tensor  # [N] class index into the dataset's classes
    folds: list[int | None]  # [N] official fold of each clip
    paths: list[str]  # [N]
    problems: list[Problem]  # clips left out (the dataset's own problems included)
    encoded: int  # clips run through the encoder in this call (the others came from the cache)


class _DecodedClips(Dataset):
    """Decodes clips in DataLoader workers as every sgsim caller of an encoder does: whole, up to its input_seconds cap."""

    def __init__(self, paths: list[Path], sample_rate: int, mono: bool, seconds: float):
        self.paths, self.sample_rate, self.mono, self.seconds = paths, sample_rate, mono, seconds

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[int, np.ndarray | None, str | None]:
        path = self.paths[index]
        try:
            waveform = load_centred_window(path, self.sample_rate, self.mono, self.seconds)
        except AudioError as error:
            return index, None, str(error)
        return index, waveform, None


def _fold_batch_norms(module: nn.Module) -> nn.Module:
    """`module` with every batch norm that follows a convolution folded into it. A subtree torch.fx cannot trace
    (shape checks, Python control flow) is searched for traceable parts instead; what fails stays as it was."""
    if not any(isinstance(child, nn.modules.batchnorm._BatchNorm) for child in module.modules()):
        return module
    try:
        return fold_batch_norms(module)
    except Exception:  # any tracing failure only means this subtree is not folded; its arithmetic is unchanged
        for name, child in module.named_children():
            setattr(module, name, _fold_batch_norms(child))
        return module


def inference_copy(encoder: AudioEncoder) -> AudioEncoder:
    """A copy of an encoder that computes the same embeddings faster: eval mode, batch norms folded into the
    convolutions before them, weights in channels_last (oneDNN's and cuDNN's fast layout for convolutions).
    The encoder's class and methods stay; only its submodules are replaced by folded ones. An encoder with
    neither batch norms nor convolution weights has nothing to gain and is returned as it is."""
    if not any(isinstance(module, nn.modules.batchnorm._BatchNorm) for module in encoder.modules()) and not any(
        parameter.dim() == 4 for parameter in encoder.parameters()
    ):
        return encoder
    fast = copy.deepcopy(encoder).eval()
    for name, child in fast.named_children():
        setattr(fast, name, _fold_batch_norms(child))
    return fast.to(memory_format=torch.channels_last)


def _as_list(items: list) -> list:
    """Collate that keeps a DataLoader batch as the list of items."""
    return items


def embed_dataset(
    encoder,
    dataset: AudioDataset,
    cache_root: str | Path | None = None,
    batch_size: int = 32,
    workers: int = 2,
    progress: Callable[[int], None] | None = None,
    precision: str = "fp32",
) -> EmbeddedDataset:
    """Embed every clip of `dataset` with `encoder` (an AudioEncoder) at `precision` (EMBEDDING_PRECISIONS), reading
    from and filling the cache.

    Clips of one shape are encoded together (the encoders' front ends need equal lengths per batch), so
    fixed-length datasets such as ESC-50 run in full batches. `progress(n)` is told of every n clips done.
    """
    precision = choose_precision(precision, encoder.device, EMBEDDING_PRECISIONS).name
    advance = progress or (lambda n: None)
    cache = EmbeddingCache(cache_root, encoder.name, state_sha256(encoder), precision) if cache_root is not None else None
    # Only regular files are hashed or decoded (a FIFO would block forever); datasets list no others, callers might.
    reasons = {index: not_a_clip(clip.path) for index, clip in enumerate(dataset.clips)}
    problems = [Problem(str(dataset.clips[index].path), reason) for index, reason in reasons.items() if reason]
    usable = [index for index, reason in reasons.items() if reason is None]
    hashes = {index: sha256_file(dataset.clips[index].path) for index in usable} if cache is not None else {}
    found: dict[int, np.ndarray] = {}
    for index, content_hash in hashes.items():
        cached = cache.get(content_hash)
        if cached is not None:
            found[index] = cached
    advance(len(found) + len(problems))
    todo = [index for index in usable if index not in found]
    skipped = len(problems)
    if todo:
        fast = inference_copy(encoder)
        decoded = _DecodedClips([dataset.clips[i].path for i in todo], encoder.sample_rate, encoder.mono, encoder.input_seconds)
        loader = DataLoader(decoded, batch_size=batch_size, num_workers=workers, collate_fn=_as_list)
        buckets: dict[tuple[int, ...], list[tuple[int, np.ndarray]]] = defaultdict(list)

        def flush(shape: tuple[int, ...]) -> None:
            batch = buckets.pop(shape)
            indices = [todo[position] for position, _ in batch]
            try:
                with torch.inference_mode(), torch.autocast(encoder.device.type, torch.bfloat16, enabled=precision == "bf16"):
                    vectors = fast.encode(torch.from_numpy(np.stack([w for _, w in batch])), encoder.sample_rate)
            except EncoderError as error:
                problems.extend(Problem(str(dataset.clips[i].path), str(error)) for i in indices)
            else:
                for index, vector in zip(indices, vectors.cpu().numpy()):
                    found[index] = vector
                    if cache is not None:
                        cache.put(hashes[index], vector)
            advance(len(batch))

        # Every batch frees and re-requests the same large blocks (15% of a CPU run's time at 1 thread).
        with freed_memory_kept(None, encoder.device):
            for items in loader:
                for position, waveform, error in items:
                    if waveform is None:
                        problems.append(Problem(str(dataset.clips[todo[position]].path), error))
                        advance(1)
                        continue
                    buckets[waveform.shape].append((position, waveform))
                    if len(buckets[waveform.shape]) >= batch_size:
                        flush(waveform.shape)
            for shape in list(buckets):
                flush(shape)
    kept = sorted(found)
    clips = [dataset.clips[i] for i in kept]
    dim = getattr(encoder, "embed_dim", 0)
    embeddings = torch.from_numpy(np.stack([found[i] for i in kept])) if kept else torch.zeros(0, dim)
    return EmbeddedDataset(
        embeddings=embeddings.float(),
        labels=torch.tensor([dataset.class_index(clip.label) for clip in clips], dtype=torch.long),
        folds=[clip.fold for clip in clips],
        paths=[str(clip.path) for clip in clips],
        problems=dataset.problems + problems,
        encoded=len(todo) - (len(problems) - skipped),
    )


def embed_sharded(
    encoder,
    dataset: AudioDataset,
    cache_root: str | Path | None = None,
    batch_size: int = 32,
    workers: int = 2,
    progress: Callable[[int], None] | None = None,
    precision: str = "fp32",
) -> EmbeddedDataset:
    """embed_dataset under torchrun: each process embeds its round-robin share of the clips, and every process gets
    the shares merged once, in the dataset's order, as one process would have embedded them. Alone: embed_dataset."""
    from sgsim.distributed import active, current_rank, gather_objects, shard

    if not active():
        return embed_dataset(encoder, dataset, cache_root, batch_size, workers, progress, precision)
    positions = shard(list(range(len(dataset.clips))), current_rank())
    mine = AudioDataset(dataset.name, dataset.root, dataset.classes, [dataset.clips[i] for i in positions])
    part = embed_dataset(encoder, mine, cache_root, batch_size, workers, progress, precision)
    rows, problems, encoded = [], list(dataset.problems), 0
    for positions, part in gather_objects((positions, part)):
        walk = iter(positions)  # a share's kept clips are a subsequence of its clips, in order
        for row, path in enumerate(part.paths):
            position = next(p for p in walk if str(dataset.clips[p].path) == path)
            rows.append((position, part.embeddings[row], int(part.labels[row]), part.folds[row], path))
        problems += part.problems
        encoded += part.encoded
    rows.sort(key=lambda row: row[0])
    dim = getattr(encoder, "embed_dim", 0)
    return EmbeddedDataset(
        embeddings=torch.stack([row[1] for row in rows]) if rows else torch.zeros(0, dim),
        labels=torch.tensor([row[2] for row in rows], dtype=torch.long),
        folds=[row[3] for row in rows],
        paths=[row[4] for row in rows],
        problems=problems,
        encoded=encoded,
    )
