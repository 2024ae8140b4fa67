"""The supervised log-mel baseline: trained on the other folds, it tells audibly different classes apart."""

from __future__ import annotations


from sgsim.datasets import read_csv_dataset
from sgsim.evaluation.compare import evaluate_supervised
from sgsim.evaluation.supervised import SupervisedConfig


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
