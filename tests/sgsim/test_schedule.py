"""sgsim.schedule: the projector's warm-up and cosine ramp-down, at the points where its shape is known."""

from __future__ import annotations

import math

import pytest

from sgsim.schedule import ramped_lr


def test_starts_at_zero_and_warms_up_linearly():
    assert ramped_lr(0, 1000, 0.1) == 0.0
    assert ramped_lr(25, 1000, 0.1) == pytest.approx(0.05)  # halfway through the 5 % warm-up
    assert ramped_lr(50, 1000, 0.1) == pytest.approx(0.1)


def test_holds_the_peak_until_the_last_quarter():
    assert all(ramped_lr(step, 1000, 0.1) == pytest.approx(0.1) for step in range(50, 751, 50))


def test_cosine_ramp_down_over_the_last_quarter():
    # t = 0.875: (1 - t) / 0.25 = 0.5, so the factor is 0.5 - 0.5 cos(pi / 2) = 0.5
    assert ramped_lr(875, 1000, 0.1) == pytest.approx(0.05)
    assert ramped_lr(900, 1000, 0.1) == pytest.approx(0.1 * (0.5 - 0.5 * math.cos(math.pi * 0.4)))
    assert ramped_lr(1000, 1000, 0.1) == pytest.approx(0.0, abs=1e-12)


def test_ramp_lengths_are_configurable():
    assert ramped_lr(1, 10, 1.0, rampup=0.0, rampdown=0.0) == pytest.approx(1.0)
    assert ramped_lr(1, 10, 1.0, rampup=0.2, rampdown=0.0) == pytest.approx(0.5)
