"""The pieces of the training recipe: SpecAugment's mask sizes, EDA text operations, InfoNCE with a proper temperature."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from sgsim.training.contrastive import LogitScale, symmetric_info_nce
from sgsim.training.spec_augment import spec_augment
from sgsim.training.text_augment import SYNONYMS, augment_text, random_insertion, random_swap, synonym_replacement


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_spec_augment_masks_at_most_two_runs_of_15_percent_time_and_30_percent_mels():
    log_mel = torch.rand(64, 128, 200) * 0.9 + 0.1  # no natural zeros
    masked = spec_augment(log_mel, generator(0))
    zero = masked == 0
    time_masked = zero.all(dim=1).sum(dim=1)  # columns zeroed on every mel row
    mel_masked = zero.all(dim=2).sum(dim=1)
    assert time_masked.max() <= 2 * int(0.15 * 200) and mel_masked.max() <= 2 * int(0.30 * 128)
    assert time_masked.float().mean() > 10 and mel_masked.float().mean() > 15  # masks are drawn, not empty
    assert torch.equal(masked[~zero], log_mel[~zero])  # nothing else changes
    # every zeroed value lies in a fully masked column or row
    assert torch.equal(zero, zero.all(dim=1, keepdim=True) | zero.all(dim=2, keepdim=True))
    assert torch.equal(masked, spec_augment(log_mel, generator(0)))
    assert not torch.equal(masked, spec_augment(log_mel, generator(1)))


def test_synonym_replacement_uses_the_table():
    words = "a dog barking loudly".split()
    replaced = synonym_replacement(words, generator(0))
    changed = [(old, new) for old, new in zip(words, replaced) if old != new]
    assert len(changed) == 1 and changed[0][1] in SYNONYMS[changed[0][0]]
    assert synonym_replacement(["xyzzy"], generator(0)) == ["xyzzy"]


def test_swap_keeps_the_words_and_insertion_adds_a_synonym():
    words = "heavy rain on a roof".split()
    assert sorted(random_swap(words, generator(3))) == sorted(words)
    inserted = random_insertion(words, generator(4))
    assert len(inserted) == len(words) + 1
    extra = list(inserted)
    for word in words:
        extra.remove(word)
    assert extra[0] in SYNONYMS["rain"]


def test_augment_text_probability():
    assert all(augment_text("dog barking", generator(s), probability=0.0) == "dog barking" for s in range(20))
    variants = {augment_text("dog barking", generator(s), probability=1.0) for s in range(40)}
    assert len(variants) > 3 and "barking dog" in variants


def test_logit_scale_is_one_over_the_temperature():
    assert float(LogitScale()().detach()) == pytest.approx(1 / 0.07)  # 14.29, where the reference used exp(0.07) = 1.07
    fixed = LogitScale(0.1, learnable=False)
    assert float(fixed()) == pytest.approx(10.0) and not fixed.log_scale.requires_grad


def test_info_nce_matches_a_hand_computation():
    a = F.normalize(torch.randn(4, 8, generator=generator(0)), dim=-1)
    b = F.normalize(torch.randn(4, 8, generator=generator(1)), dim=-1)
    logits = 10.0 * a @ b.T
    expected = (-(logits.log_softmax(1).diag().mean()) - logits.log_softmax(0).diag().mean()) / 2
    torch.testing.assert_close(symmetric_info_nce(a, b, torch.tensor(10.0)), expected)


def test_info_nce_groups_treat_equal_labels_as_positives():
    a = F.normalize(torch.randn(4, 8, generator=generator(2)), dim=-1)
    b = F.normalize(torch.randn(4, 8, generator=generator(3)), dim=-1)
    groups = torch.tensor([0, 0, 1, 1])  # clips 0 and 1 share one label text, as do 2 and 3
    logits = 10.0 * a @ b.T
    targets = torch.tensor([[0.5, 0.5, 0, 0], [0.5, 0.5, 0, 0], [0, 0, 0.5, 0.5], [0, 0, 0.5, 0.5]])
    expected = (-(targets * logits.log_softmax(1)).sum(1).mean() - (targets * logits.T.log_softmax(1)).sum(1).mean()) / 2
    torch.testing.assert_close(symmetric_info_nce(a, b, torch.tensor(10.0), groups), expected)
    # perfect alignment reaches the minimum, the entropy of the targets (log 2), instead of penalising same-label pairs
    text = b[torch.tensor([0, 0, 2, 2])]
    assert float(symmetric_info_nce(text, text, torch.tensor(100.0), groups)) == pytest.approx(math.log(2), abs=1e-4)


def test_info_nce_positives_may_differ_by_direction():
    a = F.normalize(torch.randn(3, 8, generator=generator(4)), dim=-1)
    b = F.normalize(torch.randn(3, 8, generator=generator(5)), dim=-1)
    # caption 2 ("something red") is true of pictures 0 and 2; picture 0 has captions 0 and 2, picture 2 only caption 2
    positives = torch.tensor([[True, False, True], [False, True, False], [False, False, True]])
    logits = 10.0 * a @ b.T
    rows = torch.tensor([[0.5, 0, 0.5], [0, 1, 0], [0, 0, 1]])  # picture -> its true captions
    columns = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0.5, 0, 0.5]])  # caption -> the pictures it is true of
    expected = (-(rows * logits.log_softmax(1)).sum(1).mean() - (columns * logits.T.log_softmax(1)).sum(1).mean()) / 2
    torch.testing.assert_close(symmetric_info_nce(a, b, torch.tensor(10.0), positives=positives), expected)
