"""The shapes world's renderer, captions and judge: the judge reads every render right and no noise as a shape."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from sgsim.worlds.shapes import (COLOURS, OFF_COLOUR, RANGES, RESOLUTION, SHAPES, caption_truth, captions, draw_scenes, judge, render,
                                 render_random, with_off_colours)


@pytest.fixture(scope="module")
def renders():
    return render_random(1000, seed=11)


def test_renders_are_seeded_and_in_the_generators_range():
    first, _ = render_random(8, seed=3)
    again, _ = render_random(8, seed=3)
    other, _ = render_random(8, seed=4)
    assert first.shape == (8, 3, RESOLUTION, RESOLUTION)
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert first.min() >= -1 and first.max() <= 1


def test_the_judge_reads_colour_and_shape_of_at_least_99_percent_of_renders(renders):
    images, scene = renders
    verdict = judge(images)
    assert (verdict.colour == scene.colour.numpy()).mean() >= 0.99
    assert (verdict.shape == scene.shape.numpy()).mean() >= 0.99
    assert verdict.clean.mean() >= 0.99


def test_the_judge_finds_where_and_how_big(renders):
    images, scene = renders
    verdict = judge(images)
    assert np.abs(verdict.centroid - scene.centre.numpy() / RESOLUTION).max() < 0.03  # under a pixel
    true_area = np.pi * scene.radius.numpy() ** 2 / RESOLUTION**2
    assert np.corrcoef(verdict.area, true_area)[0, 1] > 0.98


def test_every_combination_is_drawn_about_equally(renders):
    _, scene = renders
    counts = np.bincount((scene.colour * len(SHAPES) + scene.shape).numpy(), minlength=12)
    assert counts.min() > 1000 / 12 * 0.7


def test_fixed_colour_and_shape_are_honoured():
    scene = draw_scenes(6, seed=0, colour=torch.tensor(COLOURS.index("blue")), shape=torch.tensor(SHAPES.index("triangle")))
    verdict = judge(render(scene))
    assert verdict.colour_names == ["blue"] * 6 and verdict.shape_names == ["triangle"] * 6


@pytest.mark.parametrize("name, images", [
    ("uniform noise", torch.rand(50, 3, RESOLUTION, RESOLUTION, generator=torch.Generator().manual_seed(0)) * 2 - 1),
    ("blank grey", torch.zeros(5, 3, RESOLUTION, RESOLUTION)),
    ("black", -torch.ones(5, 3, RESOLUTION, RESOLUTION)),
    ("all red", torch.tensor([1.0, -1.0, -1.0]).view(1, 3, 1, 1).expand(5, 3, RESOLUTION, RESOLUTION)),
])
def test_the_judge_calls_nothing_clean_that_is_not_a_shape(name, images):
    assert not judge(images).clean.any(), name


def test_two_shapes_in_two_colours_are_not_clean():
    red = draw_scenes(4, seed=1, colour=torch.tensor(0), shape=torch.tensor(0))
    blue = draw_scenes(4, seed=2, colour=torch.tensor(2), shape=torch.tensor(1))
    red.centre[:] = torch.tensor([9.5, 9.5]); red.radius[:] = 5
    blue.centre[:] = torch.tensor([22.5, 22.5]); blue.radius[:] = 5
    both = torch.minimum(render(red), render(blue))  # a red circle and a blue square on one picture
    assert not judge(both).clean.any()


def test_captions_tell_the_truth():
    scene = draw_scenes(200, seed=5)
    for text, colour, shape in zip(captions(scene, torch.Generator().manual_seed(0)), scene.colour, scene.shape):
        named = [word for word in COLOURS + SHAPES if word in text.split()]
        assert named and set(named) <= {COLOURS[colour], SHAPES[shape]}, text


def test_the_judge_refuses_a_wrong_layout():
    with pytest.raises(ValueError, match="RGB"):
        judge(torch.zeros(2, 32, 32))


def test_off_colour_pictures_show_no_colour_the_judge_names_and_keep_their_shape():
    scene = draw_scenes(300, seed=6)
    rows = torch.arange(300) % 2 == 0
    recoloured = with_off_colours(scene, rows, torch.Generator().manual_seed(1))
    verdict, kept = judge(render(recoloured)), judge(render(scene))
    assert (recoloured.colour[rows] == OFF_COLOUR).all() and torch.equal(recoloured.colour[~rows], scene.colour[~rows])
    assert (verdict.colour[rows.numpy()] == -1).all()  # every new hue is outside the judge's 25 degrees of each colour
    assert (verdict.shape == kept.shape).mean() >= 0.99 and (verdict.colour[~rows.numpy()] == kept.colour[~rows.numpy()]).all()
    texts = captions(recoloured, torch.Generator().manual_seed(2))
    assert not any(word in text.split() for text, off in zip(texts, rows) if off for word in COLOURS)


def test_a_caption_is_true_of_every_picture_whose_attributes_it_names():
    scene = draw_scenes(4, seed=0, colour=torch.tensor([0, 0, 1, OFF_COLOUR]), shape=torch.tensor([0, 1, 0, 0]))
    truth = caption_truth(["a red circle", "something red", "a circle", "blue"], scene)
    expected = torch.tensor([[True, True, True, False],   # a red circle
                             [False, True, False, False],  # a red square
                             [False, False, True, False],  # a green circle
                             [False, False, True, False]])  # a circle in no named colour
    assert torch.equal(truth, expected)


@pytest.mark.parametrize("radius, message", [((9.0, 4.0), "expected LOW,HIGH"), ((0.0, 4.0), "expected LOW,HIGH"),
                                             ((6.0, 9.7), "a triangle of radius 9.7 does not fit the 32 px picture")])
def test_render_ranges_refuse_sizes_that_are_empty_or_do_not_fit(radius, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(RANGES, radius=radius)


def test_the_largest_radius_that_fits_is_where_a_triangle_meets_the_margin():
    # The bound: a triangle's farthest point (radius x 2 x its equal-area apothem) one margin inside the border, 15 px
    # from the centre of a 32 px picture: radius 15 / 1.555 = 9.645.
    assert dataclasses.replace(RANGES, radius=(9.64, 9.64)).radius == (9.64, 9.64)
    with pytest.raises(ValueError, match="the largest that does is 9.65"):
        dataclasses.replace(RANGES, radius=(9.65, 9.65))
