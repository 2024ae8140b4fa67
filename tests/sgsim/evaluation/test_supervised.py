"""The supervised log-mel baseline: trained on the other folds, it tells audibly different classes apart."""

from __future__ import annotations

import torch

from sgsim.datasets import read_csv_dataset
from sgsim.evaluation.compare import evaluate_supervised
from sgsim.evaluation.supervised import SupervisedConfig, supervised_scores


def test_supervised_baseline_learns_tones_on_held_out_folds(tmp_path, synthetic):
    rows = ["path,label,fold"]
    for label, frequency in (("low", 150.0), ("middle", 1200.0), ("high", 6000.0)):
        for take in range(6):
            synthetic.write_tone(tmp_path / f"{label}{take}.wav", 44100, 1, "PCM_16", frequency * (1 + 0.05 * take))
            rows.append(f"{label}{take}.wav,{label},{1 + take % 2}")
    (tmp_path / "broken.wav").write_bytes(b"not audio")
    (tmp_path / "tones.csv").write_text("\n".join(rows + ["broken.wav,low,1"]) + "\n")
    dataset = read_csv_dataset(tmp_path / "tones.csv")
    config = SupervisedConfig(backbone="resnet18", epochs=5, batch_size=3, front_end={"n_mels": 16, "frames": 44, "image_rows": 32})
    result = evaluate_supervised(dataset, config)
    assert result.encoder == "resnet18-supervised" and result.clips == 18
    assert [p.path for p in result.problems] == [str(tmp_path / "broken.wav")]
    (protocol,) = result.protocols
    assert protocol.protocol == "supervised" and [(f.fold, f.clips) for f in protocol.folds] == [(1, 9), (2, 9)]
    assert protocol.top1 >= 2 * 100 / 3, [f.top1 for f in protocol.folds]  # chance is 33 %


def test_under_torchrun_each_process_trains_its_share_of_the_folds_and_all_get_every_score(as_two_ranks):
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(12) % 2
    images = torch.randn(12, 1, 16, 16, generator=generator) + labels[:, None, None, None].float()
    folds = [1 + i % 3 for i in range(12)]
    config = SupervisedConfig(backbone="resnet18", epochs=1, batch_size=4)
    alone = supervised_scores(images, labels, folds, 2, config, torch.device("cpu"))
    progress = []

    def as_a_rank() -> torch.Tensor:
        progress.clear()  # what the last rank to run, rank 0, reported
        return supervised_scores(images, labels, folds, 2, config, torch.device("cpu"), progress.append)

    merged, shares = as_two_ranks(as_a_rank)

    scored = {rank: sorted({folds[i] for i in torch.nonzero(shares[rank].sum(1)).flatten().tolist()}) for rank in (0, 1)}
    assert scored == {0: [1, 3], 1: [2]}  # round robin over the folds, no fold trained twice
    torch.testing.assert_close(merged, alone)
    assert sum(progress) == 12  # rank 0's bar reaches every clip, its own folds' and then the others'
