"""Encoder evaluation: accuracy per fold on cases whose answer is known, the embedding cache, reports."""

from __future__ import annotations

import csv
import io
import json

import pytest
import soundfile
import torch
import torch.nn.functional as F
from torch import nn

from encoders.base import AudioEncoder
from sgsim.audio import load_centred_window
from sgsim.datasets import AudioDataset, read_urbansound8k
from sgsim.evaluation.compare import Comparison, evaluate_encoder
from sgsim.checksums import state_sha256
from sgsim.evaluation.embeddings import embed_dataset
from sgsim.evaluation.prompts import class_embeddings, class_text
from sgsim.evaluation.report import markdown, write_reports
from sgsim.evaluation.scoring import linear_probe_scores, score_by_fold, top_k_hits, zero_shot_scores


class CountingEncoder(AudioEncoder):
    """A cheap deterministic encoder that counts the clips it embeds: [mean |x|, std, first sample, 1] * scale."""

    name = "counting"
    sample_rate = 8000
    embed_dim = 4
    input_seconds = 1.0

    def __init__(self, scale: float = 1.0):
        super().__init__()
        self.scale = nn.Parameter(torch.full((4,), scale))
        self.calls = 0

    def forward(self, waveform):
        self.calls += waveform.shape[0]
        features = [waveform.abs().mean(-1), waveform.std(-1), waveform[:, 0], torch.ones_like(waveform[:, 0])]
        return torch.stack(features, -1) * self.scale


class FixedTextClip:
    """Stands in for ClipModel: each known text has a fixed unit embedding."""

    def __init__(self, table: dict[str, torch.Tensor]):
        self.table = table
        self.model = nn.Identity()  # no weights: one text cache for every table

    def encode_text(self, texts):
        return torch.stack([self.table[text] for text in texts])


def test_score_by_fold_known_answer():
    # 3 classes; fold 1: 2 of 3 right at top-1; fold 2: 0 of 1 right at top-1 but right at top-2.
    scores = torch.tensor([[0.9, 0.1, 0.0], [0.1, 0.8, 0.1], [0.7, 0.2, 0.1], [0.6, 0.4, 0.0]])
    labels = torch.tensor([0, 1, 2, 1])
    result = score_by_fold("zero-shot", scores, labels, [1, 1, 1, 2], ["a", "b", "c"])
    assert [(f.fold, f.clips, round(f.top1, 4)) for f in result.folds] == [(1, 3, 66.6667), (2, 1, 0.0)]
    assert result.top1 == pytest.approx((200 / 3 + 0) / 2)  # the mean over folds, not over clips
    assert top_k_hits(scores, labels, 2).tolist() == [True, True, False, True]
    assert [f.top5 for f in result.folds] == [100.0, 100.0]  # fewer than 5 classes: top-5 is always right
    assert result.confusion["c"] == {"clips": 1, "top1": 0.0, "mistaken_for": [["a", 1]]}
    assert result.confusion["b"]["mistaken_for"] == [["a", 1]]


def test_zero_shot_with_text_embeddings_known_by_construction():
    labels = ["dog", "crackling_fire", "rain"]
    directions = F.normalize(torch.randn(3, 8, generator=torch.Generator().manual_seed(0)), dim=-1)
    clip = FixedTextClip({f"the sound of {class_text(label)}": d for label, d in zip(labels, directions)})
    text = class_embeddings(clip, labels, ["the sound of {}"])
    torch.testing.assert_close(text, directions)
    # fold 1: every clip lies on its class; fold 2: the second clip lies on the wrong class
    truth = torch.tensor([0, 1, 2, 0, 1])
    audio = directions[torch.tensor([0, 1, 2, 0, 2])]
    result = score_by_fold("zero-shot", zero_shot_scores(audio, text), truth, [1, 1, 1, 2, 2], labels)
    assert [f.top1 for f in result.folds] == [100.0, 50.0]
    assert result.top1 == 75.0


def test_zero_shot_dimension_mismatch_is_explained():
    from sgsim.errors import SgsimError

    with pytest.raises(SgsimError, match="different spaces"):
        zero_shot_scores(torch.zeros(2, 4), torch.zeros(3, 8))


def test_linear_probe_trains_on_the_other_folds_only():
    generator = torch.Generator().manual_seed(1)
    centres = torch.eye(3) * 5
    labels = torch.tensor([0, 1, 2] * 6)
    features = centres[labels] + 0.1 * torch.randn(18, 3, generator=generator)
    folds = [1 + i // 6 for i in range(18)]
    result = score_by_fold("linear-probe", linear_probe_scores(features, labels, folds, 4), labels, folds, ["a", "b", "c", "d"])
    assert [f.top1 for f in result.folds] == [100.0, 100.0, 100.0]
    # class 2 appears only in fold 3: held out, it was never trained on, so fold 3's class-2 clips are wrong
    labels[12:] = torch.tensor([2, 2, 2, 1, 1, 1])
    labels[:12][labels[:12] == 2] = 0
    scores = linear_probe_scores(centres[labels], labels, folds, 3)
    assert (scores[12:15, 2] == 0).all()
    assert score_by_fold("linear-probe", scores, labels, folds, ["a", "b", "c"]).folds[2].top1 == 50.0


def test_cache_is_hit_on_a_second_run_and_refreshed_for_what_changed(tmp_path, synthetic):
    dataset = read_urbansound8k(synthetic.make_urbansound8k(tmp_path / "us8k"))
    encoder = CountingEncoder()
    first = embed_dataset(encoder, dataset, tmp_path / "cache", batch_size=4, workers=0)
    assert encoder.calls == 6 and first.encoded == 6
    second = embed_dataset(encoder, dataset, tmp_path / "cache", batch_size=4, workers=0)
    assert encoder.calls == 6 and second.encoded == 0  # nothing re-encoded
    torch.testing.assert_close(second.embeddings, first.embeddings, rtol=0, atol=0)
    # one file's content changes: only it is encoded again
    changed = dataset.clips[2].path
    data, rate = soundfile.read(changed)
    soundfile.write(changed, data * 0.5 + 0.1, rate, subtype="FLOAT")
    third = embed_dataset(encoder, dataset, tmp_path / "cache", batch_size=4, workers=0)
    assert encoder.calls == 7 and third.encoded == 1
    # other weights of the same encoder: a separate cache entry, everything encoded again
    other = CountingEncoder(scale=2.0)
    embed_dataset(other, dataset, tmp_path / "cache", batch_size=4, workers=0)
    assert other.calls == 6


@pytest.mark.filterwarnings("ignore:this CPU has no native bfloat16")  # tests run as on a CPU without (tests/sgsim/conftest.py)
def test_cache_never_serves_one_precision_for_another(tmp_path, synthetic):
    dataset = read_urbansound8k(synthetic.make_urbansound8k(tmp_path / "us8k"))
    encoder = CountingEncoder()
    embed_dataset(encoder, dataset, tmp_path / "cache", batch_size=4, workers=0)
    assert embed_dataset(encoder, dataset, tmp_path / "cache", batch_size=4, workers=0, precision="bf16").encoded == 6
    assert embed_dataset(encoder, dataset, tmp_path / "cache", batch_size=4, workers=0, precision="fp32").encoded == 0
    assert embed_dataset(encoder, dataset, tmp_path / "cache", batch_size=4, workers=0, precision="bf16").encoded == 0
    assert encoder.calls == 12
    # fp32 entries stay where earlier versions put them, so their caches are still used
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [f"counting-{state_sha256(encoder)[:16]}", f"counting-{state_sha256(encoder)[:16]}-bf16"]


def test_embeddings_match_encoding_each_file_alone_for_mixed_rates_and_channels(tmp_path, synthetic):
    dataset = read_urbansound8k(synthetic.make_urbansound8k(tmp_path / "us8k"))
    encoder = CountingEncoder()
    embedded = embed_dataset(encoder, dataset, None, batch_size=3, workers=2)
    windows = [load_centred_window(clip.path, encoder.sample_rate, encoder.mono, encoder.input_seconds) for clip in dataset.clips]
    expected = torch.stack([encoder.encode(torch.from_numpy(window)[None], encoder.sample_rate)[0] for window in windows])
    torch.testing.assert_close(embedded.embeddings, expected)
    assert embedded.labels.tolist() == [0, 1, 2, 3, 0, 3] and embedded.folds == [1, 1, 2, 2, 3, 3]


def test_unreadable_file_is_reported_and_the_run_goes_on(tmp_path, synthetic):
    root = synthetic.make_urbansound8k(tmp_path / "us8k")
    broken = root / "audio" / "fold2" / "1002-2-0-0.wav"
    broken.write_bytes(b"RIFF garbage, not a wave file")
    dataset = read_urbansound8k(root)
    result = evaluate_encoder(CountingEncoder(), FixedTextClip({class_text(c): F.normalize(torch.ones(4), dim=0) for c in dataset.classes}),
                              dataset, prompts="bare", cache_root=tmp_path / "cache", workers=0)
    assert result.clips == 5 and len(result.problems) == 1
    assert result.problems[0].path == str(broken) and "cannot" in result.problems[0].reason
    assert [p.protocol for p in result.protocols] == ["zero-shot", "linear-probe"]


def test_reports_in_four_formats_with_the_paper_beside(tmp_path, shared_data):
    dataset = AudioDataset("esc50", tmp_path / "esc50-mini", ["dog", "rain"], [])
    labels = torch.tensor([0, 1, 1, 0])
    scores = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])
    from sgsim.evaluation.compare import DatasetResult

    result = DatasetResult("sgsim-resnet18", dataset.root.name, "esc50", 4, [], [
        score_by_fold("zero-shot", scores, labels, [1, 1, 2, 2], dataset.classes)
    ], encoded=4, seconds=0.1)
    comparison = Comparison([result], skipped=[("wav2clip", "weights missing")], prompts="sound")
    paths = write_reports(comparison, tmp_path / "report", with_paper=True)
    assert [p.name for p in paths] == ["encoders.md", "encoders.csv", "encoders.json", "encoders.png"]
    table = (tmp_path / "report" / "encoders.md").read_text()
    assert "| sgsim-resnet18 | zero-shot | 75.0 / 100.0 |" in table
    assert "| SGSIM (paper) | zero-shot | 57.8 / – |" in table and "skipped wav2clip: weights missing" in table
    rows = list(csv.DictReader(io.StringIO((tmp_path / "report" / "encoders.csv").read_text())))
    ours = [(r["fold"], float(r["top1"])) for r in rows if r["source"] == "ours"]
    assert ours == [("1", 100.0), ("2", 50.0), ("mean", 75.0)]
    assert any(r["source"] == "paper" and r["method"] == "AudioCLIP" and float(r["top1"]) == 69.4 for r in rows)
    content = json.loads((tmp_path / "report" / "encoders.json").read_text())
    assert content["results"][0]["protocols"][0]["confusion"]["rain"]["mistaken_for"] == [["dog", 1]]
    assert (tmp_path / "report" / "encoders.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "(paper)" not in markdown(comparison, with_paper=False)


def test_class_text_embeddings_are_cached_by_text(tmp_path):
    from sgsim.evaluation.embeddings import EmbeddingCache

    directions = F.normalize(torch.randn(2, 8, generator=torch.Generator().manual_seed(5)), dim=-1)
    clip = FixedTextClip({"the sound of dog": directions[0], "the sound of rain": directions[1]})
    asked = []
    original = clip.encode_text
    clip.encode_text = lambda texts: asked.append(list(texts)) or original(texts)
    cache = EmbeddingCache(tmp_path, "text-test", "0" * 64)
    first = class_embeddings(clip, ["dog", "rain"], ["the sound of {}"], cache)
    second = class_embeddings(clip, ["rain", "dog"], ["the sound of {}"], cache)
    assert asked == [["the sound of dog", "the sound of rain"]]  # the second call reads the cache
    torch.testing.assert_close(second, first.flip(0))


def test_bar_chart_groups_by_method_with_the_papers_bar_beside_and_the_spread(tmp_path):
    from matplotlib import colors, pyplot

    from sgsim.evaluation.compare import DatasetResult
    from sgsim.evaluation.report import bar_chart

    classes = ["dog", "rain"]
    labels = torch.tensor([0, 1, 1, 0])
    right = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    half = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])  # fold 1 right, fold 2 wrong: 50 ± 50
    results = [DatasetResult(label, "esc50-six", "esc50", 4, [], [score_by_fold("zero-shot", scores, labels, [1, 1, 2, 2], classes)],
                             encoded=4, seconds=0.1, model=model)
               for label, model, scores in [("released", "sgsim-resnet18", right), ("mine", "sgsim-resnet18", half),
                                            ("wav2clip", "wav2clip", right)]]
    figure = bar_chart(Comparison(results, prompts="sound"), with_paper=True)
    panel = figure.axes[0]
    bars = [patch for patch in panel.patches]
    heights = [round(bar.get_height(), 1) for bar in bars]
    # released, its paper bar (SGSIM zero-shot 57.8), mine, the same paper bar, wav2clip, Wav2CLIP's 41.4; then AudioCLIP, ...
    assert heights[:6] == [100.0, 57.8, 50.0, 57.8, 100.0, 41.4]
    assert bars[1].get_x() == pytest.approx(bars[0].get_x() + bars[0].get_width())  # the paper's bar right beside our own
    assert bars[1].get_hatch() == "//" and bars[0].get_hatch() is None
    own = [colors.to_hex(bar.get_facecolor()[:3]) for bar in bars[0:6:2]]
    assert len(set(own)) == 3  # no colour shared between methods
    texts = {text.get_text() for text in panel.texts}
    assert {"100.0", "57.8", "50.0", "41.4"} <= texts  # values on the bars
    segments = [segment for container in panel.containers if getattr(container, "errorbar", None) is not None
                for segment in container.errorbar.lines[2][0].get_segments()]
    assert [round(s[1][1] - s[0][1], 1) for s in segments] == [0.0, 100.0, 0.0]  # ± std over folds: 50 ± 50 for "mine"
    assert "full ESC-50" in panel.get_title() and "esc50-six: 4 clips, 2 held-out folds" in panel.get_title()
    pyplot.close(figure)


def test_datasets_whose_folders_share_a_name_are_labelled_apart(tmp_path):
    """Two `audio` folders must not give two progress bars and two report rows that read alike."""
    from types import SimpleNamespace

    from sgsim.evaluation.compare import dataset_labels

    datasets = [SimpleNamespace(root=tmp_path / parent / name) for parent, name in
                (("esc50", "audio"), ("us8k", "audio"), ("x", "vggsound"))]
    assert dataset_labels(datasets) == ["esc50/audio", "us8k/audio", "vggsound"]
    same = [SimpleNamespace(root=tmp_path / "a" / "audio"), SimpleNamespace(root=tmp_path / "b" / "a" / "audio")]
    assert dataset_labels(same) == ["a/audio", "a/audio #2"]
