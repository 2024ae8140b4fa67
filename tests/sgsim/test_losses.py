"""sgsim.losses: a loss term is an object registered once by name, weighted by name, recorded by name;
the optimiser sums whatever terms it is given and moves whatever variables it is given."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sgsim.editing import Editor, Target
from sgsim.editing.optimise import optimise_latents
from sgsim.editing.sources import seed_latent
from sgsim.editing.variables import SharedOffset
from sgsim.errors import SgsimError
from sgsim.losses import TERMS, EditProblem, StepInputs, register_term

STEPS = 4


class Brightness:
    """A term defined outside sgsim: the mean pixel value of each image, prepared with the source's (to test `prepare`)."""

    needs = ()
    prepared: list[torch.Tensor] = []

    def prepare(self, problem: EditProblem):
        Brightness.prepared.append(problem.source_images().mean(dim=(1, 2, 3)))
        return lambda step: step.images.mean(dim=(1, 2, 3))


class NeedsAbsentNetwork:
    needs = ("depth",)

    def prepare(self, problem: EditProblem):
        raise AssertionError("never prepared: the Editor has no depth network")


@pytest.fixture(scope="module")
def toy_terms():
    register_term("brightness", Brightness)
    register_term("depth", NeedsAbsentNetwork)
    yield
    del TERMS["brightness"], TERMS["depth"]


@pytest.fixture(scope="module")
def rain(shared_data) -> Target:
    return Target(shared_data / "audio" / "raining.wav")


def test_a_term_registered_from_outside_is_weighted_and_recorded(editor, toy_terms, rain):
    Brightness.prepared.clear()
    result = editor.edit(0, rain, steps=STEPS, weights={"brightness": 0.5})
    assert len(Brightness.prepared) == 1  # prepared once per optimisation, not per step
    assert result.settings["weights"] == {"clip": 1.0, "latent": 0.002, "id": 0.0, "brightness": 0.5}
    losses = result.losses
    assert list(losses) == ["total", "clip", "latent", "id", "brightness"]
    assert (np.abs(losses["brightness"]) > 0).all() and (losses["id"] == 0).all()
    expected = losses["clip"] + 0.002 * losses["latent"] + 0.5 * losses["brightness"]
    np.testing.assert_allclose(losses["total"], expected, rtol=1e-6, atol=1e-7)
    first = float(torch.as_tensor(Brightness.prepared[0])[0])
    assert losses["brightness"][0, 0] == pytest.approx(first, abs=1e-6)  # step 0 renders the source


def test_a_term_at_weight_zero_is_off_and_changes_nothing(editor, toy_terms, rain):
    plain = editor.edit(0, rain, steps=STEPS)
    off = editor.edit(0, rain, steps=STEPS, weights={"brightness": 0.0})
    assert torch.equal(off.images, plain.images) and (off.losses["brightness"] == 0).all()
    on = editor.edit(0, rain, steps=STEPS, weights={"brightness": 5.0})
    assert not torch.equal(on.edited_latents, plain.edited_latents)


def test_weights_by_name_and_the_lambda_aliases_agree(editor, rain):
    by_alias = editor.edit(0, rain, steps=STEPS, lambda_latent=0.05)
    by_name = editor.edit(0, rain, steps=STEPS, weights={"latent": 0.05})
    assert torch.equal(by_alias.edited_latents, by_name.edited_latents)
    assert by_alias.settings["weights"] == by_name.settings["weights"] and by_name.settings["lambda_latent"] == 0.05


def test_unknown_terms_bad_weights_and_name_clashes_are_refused(editor, rain):
    with pytest.raises(SgsimError, match="unknown loss term 'sharpness'; the terms are clip, latent, id"):
        editor.edit(0, rain, steps=1, weights={"sharpness": 1.0})
    with pytest.raises(SgsimError, match="finite numbers >= 0"):
        editor.edit(0, rain, steps=1, weights={"clip": float("nan")})
    with pytest.raises(SgsimError, match="already registered"):
        register_term("clip", Brightness)
    with pytest.raises(SgsimError, match="'total' names the weighted sum"):
        register_term("total", Brightness)


def test_a_term_whose_network_is_absent_is_turned_off_with_one_warning(editor, toy_terms, rain):
    with pytest.warns(UserWarning, match="editing without the depth loss \\(depth weight 0\\): no depth network was given"):
        result = editor.edit(0, rain, steps=2, weights={"depth": 1.0})
    assert result.settings["weights"]["depth"] == 0.0 and (result.losses["depth"] == 0).all()


def test_the_optimiser_refuses_a_term_without_its_network(editor, toy_terms):
    G = editor.generator
    with pytest.raises(SgsimError, match="the loss term 'depth' needs the depth network"):
        optimise_latents(G, editor.clip, seed_latent(G, 0)[None], torch.ones(1, 512) / 512 ** 0.5, steps=1, lr=0.1,
                         weights={"clip": 1.0, "depth": 1.0})


def test_a_shared_offset_moves_every_source_latent_by_the_same_amount(editor):
    """The instant-edit shape: one W+ offset for a sound, applied to many source latents."""
    G = editor.generator
    sources = torch.stack([seed_latent(G, seed) for seed in (0, 1, 2)])
    direction = torch.nn.functional.normalize(torch.randn(1, 512, generator=torch.Generator().manual_seed(3)), dim=-1)
    variables = SharedOffset(sources, layers=[2, 3])
    result = optimise_latents(G, editor.clip, sources, direction.expand(3, -1), steps=STEPS, lr=0.1,
                              weights={"clip": 1.0, "latent": 0.002}, variables=variables)
    moved = result.latents - sources
    offset = variables.offset.detach()
    assert offset.abs().amax() > 0.01
    torch.testing.assert_close(moved[:, [2, 3]], offset.expand(3, -1, -1), atol=1e-6, rtol=0)  # up to float rounding
    assert torch.equal(result.latents[:, [0, 1, 4, 5, 6, 7]], sources[:, [0, 1, 4, 5, 6, 7]])
    assert result.losses["clip"].shape == (STEPS, 3)


def test_step_inputs_carry_the_gradient_to_the_latents(editor):
    """What a term sees: latents and images of the step, both differentiable."""
    G = editor.generator
    seen: list[StepInputs] = []

    class Spy:
        needs = ()

        def prepare(self, problem):
            return lambda step: seen.append(step) or step.latents.square().flatten(1).sum(1) * 0

    register_term("spy", Spy)
    try:
        optimise_latents(G, editor.clip, seed_latent(G, 0)[None], torch.ones(1, 512) / 512 ** 0.5, steps=1, lr=0.1,
                         weights={"clip": 1.0, "spy": 1.0})
    finally:
        del TERMS["spy"]
    assert seen[0].latents.requires_grad and seen[0].images.requires_grad and seen[0].images.shape == (1, 3, 32, 32)


def test_temporal_smoothness_scores_each_keyframe_against_the_next():
    from sgsim.losses import TemporalSmoothness

    latents = torch.zeros(3, 2, 4)
    latents[1] += 1.0  # 8 squared units from keyframe 0 and from keyframe 2
    latents[2] += 3.0  # then 4 * 2 * 2 = 32 from keyframe 1
    term = TemporalSmoothness().prepare(EditProblem(None, None, torch.zeros(3, 1), latents))
    assert term(StepInputs(latents=latents, images=torch.zeros(3, 3, 4, 4))).tolist() == [8.0, 32.0, 0.0]


def test_the_perceptual_term_is_zero_at_the_source_and_grows_with_the_edit(editor, rain, random_weights):
    from sgsim.lpips import LpipsDistance

    lpips = LpipsDistance(channels=(4, 8, 8, 8, 8))
    state = random_weights(lpips.state_dict(), 5)
    state.update({k: v.abs() for k, v in state.items() if k.startswith("lpips")})  # LPIPS weights are >= 0
    lpips.load_state_dict(state)
    with_lpips = Editor(editor.generator, editor.audio_encoder, editor.clip, lpips=lpips.eval(), device="cpu")
    result = with_lpips.edit(0, rain, steps=STEPS, weights={"perceptual": 0.1})
    distance = result.losses["perceptual"][:, 0]
    assert distance[0] == pytest.approx(0, abs=1e-9) and distance[-1] > 0
    np.testing.assert_allclose(result.losses["total"], result.losses["clip"] + 0.002 * result.losses["latent"]
                               + 0.1 * result.losses["perceptual"], rtol=1e-6, atol=1e-7)
