"""steps="auto": the flattening rule on synthetic loss histories, and an auto edit on the tiny networks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sgsim.editing.stopping import AUTO_RULE, FlatteningRule, steps_and_rule, stop_reason
from sgsim.errors import SgsimError
from sgsim.settings import EditSettings

RULE = FlatteningRule(window=5, min_improvement=0.01, min_steps=10, max_steps=50)


def test_a_loss_that_stops_falling_stops_the_window_after_its_last_large_fall():
    # Falls 0.02 a step to 0.6 after 21 steps, then stays: the fall over the last 5 steps first is <= 1 % of the best
    # loss 5 steps back when that best is the plateau itself, after 21 + 5 steps.
    loss = np.concatenate([1.0 - 0.02 * np.arange(21), np.full(29, 0.6)])
    assert RULE.stop_steps(loss[:, None]) == [26]
    assert RULE.flattened(loss[:26, None]).all() and not RULE.flattened(loss[:25, None]).any()


def test_a_flat_loss_still_runs_the_minimum_steps():
    assert RULE.stop_steps(np.full((50, 1), 0.5)) == [RULE.min_steps]
    assert not RULE.flattened(np.full((RULE.min_steps - 1, 1), 0.5)).any()


def test_a_loss_still_falling_reaches_the_cap():
    loss = 0.97 ** np.arange(60)  # 3 % a step: 14 % over any 5 steps
    assert RULE.stop_steps(loss[:, None]) == [None]


def test_each_row_is_judged_on_its_own_and_on_the_steps_that_scored_it():
    falling, flat = 1.0 - 0.02 * np.arange(50), np.full(50, 0.5)
    assert RULE.stop_steps(np.stack([falling, flat], axis=1)) == [None, 10]
    sparse = flat.copy()
    sparse[1::2] = np.nan  # scored every other step (minibatches): its best is carried over the steps between
    never = np.full(50, np.nan)
    assert RULE.stop_steps(np.stack([sparse, never], axis=1)) == [10, None]


def test_noise_above_the_best_so_far_does_not_count_as_progress():
    loss = np.full(50, 0.5)
    loss[::3] = 0.9  # spikes that fall back
    assert RULE.stop_steps(loss[:, None]) == [RULE.min_steps]


@pytest.mark.parametrize("window, least, cap, improvement", [(0, 10, 50, 0.01), (10, 10, 50, 0.01), (5, 60, 50, 0.01),
                                                               (5, 10, 50, -0.1)])
def test_rules_that_could_not_work_are_refused(window, least, cap, improvement):
    with pytest.raises(SgsimError, match="window < min_steps <= max_steps"):
        FlatteningRule(window=window, min_improvement=improvement, min_steps=least, max_steps=cap)


def test_auto_runs_the_rule_up_to_its_cap_and_a_number_runs_exactly():
    assert steps_and_rule("auto") == (AUTO_RULE.max_steps, AUTO_RULE)
    assert steps_and_rule(120) == (120, None)
    assert stop_reason(None, 120, [120], 0) == "fixed: 120 steps asked for"
    assert stop_reason(RULE, 50, [30, 50], 1).startswith("reached the cap of 50 steps, 1 of 2 samples flattened")


@pytest.mark.parametrize("value, kept", [("auto", "auto"), (" AUTO ", "auto"), ("12", 12), (300, 300), (40.0, 40)])
def test_the_steps_setting_is_a_number_or_auto(value, kept):
    assert EditSettings(steps=value).steps == kept


@pytest.mark.parametrize("value", ["abc", "1.5", True, 2.5, None])
def test_other_steps_are_one_clear_error(value):
    with pytest.raises(SgsimError, match="neither a whole number such as 300 nor auto"):
        EditSettings(steps=value)


def test_an_auto_edit_is_deterministic_and_records_its_steps_and_why(editor):
    from sgsim.editing import Target

    runs = [editor.edit(3, [Target(text="rain"), Target(text="a red circle")], steps="auto", precision="fp32") for _ in range(2)]
    first, second = runs
    torch.testing.assert_close(first.edited_latents, second.edited_latents, rtol=0, atol=0)
    used = first.settings["steps_used"]
    assert first.settings["steps"] == "auto" and used == second.settings["steps_used"]
    assert all(AUTO_RULE.min_steps <= n <= AUTO_RULE.max_steps for n in used)
    assert len(first.losses["total"]) == max(used)
    # The steps before a row flattens are the fixed run's, so its history says where it flattened; then it cools.
    flattened = AUTO_RULE.stop_steps(first.losses["total"])
    assert [min(n + AUTO_RULE.cooldown, AUTO_RULE.max_steps) if n else AUTO_RULE.max_steps for n in flattened] == used
    assert first.settings["steps_reason"] == stop_reason(AUTO_RULE, max(used), used, sum(map(bool, flattened)))


def test_a_stopped_row_is_the_fixed_runs_lowest_loss_latents_before_its_stop(editor):
    """Auto runs the steps of the fixed run of its cap, under the same ramp: a row that stops is that run's latents of
    its lowest total loss up to the stop, a row that reaches the cap its end (scripts/bench_edit.py --auto-steps reads
    its auto numbers from the fixed run this way)."""
    from sgsim.editing.sources import SeedSource
    from sgsim.editing.targets import Target, embed_target

    rule = FlatteningRule(window=3, min_improvement=0.05, min_steps=6, max_steps=40)
    run = editor.prepare_run("fp32", None, None, None)
    aims = torch.stack([embed_target(Target(text=text), editor.audio_encoder, editor.clip).mixed(1.0) for text in ("rain", "fire")])
    start = torch.stack([editor.source_latent(SeedSource(seed)) for seed in (3, 4)])
    seen: list[torch.Tensor] = []  # the latents each step rendered, then the end
    fixed = editor.optimise(run, start, aims, steps=rule.max_steps, lr=0.1,
                            callback=lambda step, losses, latents: seen.append(latents.cpu()), callback_values=("latents",))
    auto = editor.optimise(run, start, aims, steps=rule.max_steps, lr=0.1, stop=rule)
    seen.append(fixed.latents.cpu())
    stops = rule.stop_steps(fixed.losses["total"])
    assert any(stops) and [n or rule.max_steps for n in stops] == auto.steps_used
    for row, stop in enumerate(stops):
        kept = int(np.argmin(fixed.losses["total"][:stop, row])) if stop else rule.max_steps
        torch.testing.assert_close(auto.latents[row].cpu(), seen[kept][row], rtol=0, atol=0)
    np.testing.assert_array_equal(auto.losses["total"], fixed.losses["total"][: max(auto.steps_used)])


def test_the_cooldown_falls_from_one_to_zero_in_its_steps_and_rows_not_flattened_keep_the_full_rate():
    rule = FlatteningRule(window=5, min_improvement=0.01, min_steps=10, max_steps=50, cooldown=4)
    factors = rule.cooling(np.array([-1, 0, 1, 2, 3, 4, 9]))
    assert factors[0] == 1 and np.all(np.diff(factors[1:5]) < 0) and 0 < factors[4 - 1] < factors[1] < 1
    np.testing.assert_allclose(factors[1:5], 0.5 + 0.5 * np.cos(np.pi * np.arange(1, 5) / 5))
    assert factors[5] == pytest.approx(0, abs=1e-12) and factors[6] == pytest.approx(0, abs=1e-12)
    with pytest.raises(SgsimError, match="cooldown >= 0"):
        FlatteningRule(window=5, min_improvement=0.01, min_steps=10, max_steps=50, cooldown=-1)


def test_a_cooled_row_runs_the_fixed_steps_to_its_flattening_then_its_cooldown_as_it_would_alone(editor):
    """With a cooldown a row runs the fixed run's steps until it flattens, then `cooldown` steps at a falling rate, and
    ends there (its latents move no more while the batch runs on): each row's result is the one it gets alone."""
    from sgsim.editing.sources import SeedSource
    from sgsim.editing.targets import Target, embed_target

    rule = FlatteningRule(window=3, min_improvement=0.01, min_steps=6, max_steps=60, cooldown=5)
    run = editor.prepare_run("fp32", None, None, None)
    aims = torch.stack([embed_target(Target(text=text), editor.audio_encoder, editor.clip).mixed(1.0) for text in ("rain", "fire")])
    start = torch.stack([editor.source_latent(SeedSource(seed)) for seed in (3, 4)])
    fixed = editor.optimise(run, start, aims, steps=rule.max_steps, lr=0.1)
    together = editor.optimise(run, start, aims, steps=rule.max_steps, lr=0.1, stop=rule)
    flattened = rule.stop_steps(fixed.losses["total"])
    assert all(flattened) and len(set(flattened)) == 2, "the rows must flatten at different steps for this test to say anything"
    assert together.steps_used == [n + rule.cooldown for n in flattened]
    assert together.stopped.startswith(f"flattened and cooled (the learning rate to zero over 5 steps) by step {max(together.steps_used)}")
    first = min(flattened)
    np.testing.assert_array_equal(together.losses["total"][:first], fixed.losses["total"][:first])
    for row in range(2):
        alone = editor.optimise(run, start[row:row + 1], aims[row:row + 1], steps=rule.max_steps, lr=0.1, stop=rule)
        assert alone.steps_used == [together.steps_used[row]]
        torch.testing.assert_close(together.latents[row], alone.latents[0], rtol=1e-5, atol=1e-5)
        assert not torch.equal(together.latents[row], fixed.latents[row])
