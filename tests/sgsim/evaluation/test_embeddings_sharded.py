"""Embedding a dataset sharded over torchrun's processes gives what one process gives: the shares merged in order."""

from __future__ import annotations

import torch
from torch import nn

from encoders.base import AudioEncoder
from sgsim.datasets import read_urbansound8k
from sgsim.evaluation.embeddings import embed_dataset, embed_sharded


class SummaryEncoder(AudioEncoder):
    """A cheap deterministic encoder: [mean |x|, std, first sample]."""

    name = "summary"
    sample_rate = 8000
    embed_dim = 3
    input_seconds = 1.0

    def __init__(self):
        super().__init__()
        self.unit = nn.Parameter(torch.ones(3))

    def forward(self, waveform):
        return torch.stack([waveform.abs().mean(-1), waveform.std(-1), waveform[:, 0]], -1) * self.unit


def test_two_shards_merge_into_the_single_process_result(tmp_path, synthetic, as_two_ranks):
    root = synthetic.make_urbansound8k(tmp_path / "us8k")
    dataset = read_urbansound8k(root)
    broken = dataset.clips[3].path
    broken.write_bytes(b"RIFF0000WAVE")  # a clip that cannot be decoded: a problem, in the share of rank 1
    encoder = SummaryEncoder()
    alone = embed_dataset(encoder, dataset, None, batch_size=2, workers=0)
    merged, shares = as_two_ranks(lambda: embed_sharded(encoder, dataset, None, batch_size=2, workers=0))

    assert len(shares[0][0]) + len(shares[1][0]) == len(dataset.clips) and 3 in shares[1][0]
    assert merged.paths == alone.paths and str(broken) not in merged.paths
    torch.testing.assert_close(merged.embeddings, alone.embeddings, rtol=0, atol=0)
    assert torch.equal(merged.labels, alone.labels) and merged.folds == alone.folds
    assert [p.path for p in merged.problems] == [p.path for p in alone.problems] == [str(broken)]
    assert merged.encoded == alone.encoded
