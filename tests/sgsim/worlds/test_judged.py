"""sgsim.worlds.judged counts edits the way the issue words them: renders with known colour, shape and position stand
in for edits, so every rate has an independent expectation."""

import dataclasses

import numpy as np
import pytest
import torch

from sgsim.editing.stopping import FlatteningRule
from sgsim.worlds.judged import POSITION_PIXELS, Aim, clip_reached, judged_video, score
from sgsim.worlds.shapes import COLOURS, SHAPES, draw_scenes, judge, render


def scenes(colours, shapes, seed=3):
    return draw_scenes(len(colours), seed, colour=torch.tensor(colours), shape=torch.tensor(shapes))


def test_aim_reads_colour_and_shape_words():
    assert Aim.of_words("blue") == Aim(colour="blue")
    assert Aim.of_words("a triangle") == Aim(shape="triangle")
    assert Aim.of_words("a red", "square") == Aim("red", "square")
    for bad in ("a dog", "red blue", "circle square"):
        with pytest.raises(ValueError, match="one colour, one shape"):
            Aim.of_words(bad)


def test_a_colour_edit_that_recolours_and_keeps_the_rest_succeeds():
    before = scenes([0, 1, 3, 1], [0, 1, 2, 0])
    blue = COLOURS.index("blue")
    after = draw_scenes(4, 3, colour=torch.full((4,), blue), shape=before.shape)  # same seed: same size and place
    result = score(judge(render(before)), judge(render(after)), Aim(colour="blue"), 32)
    assert result["colour_reached"] == 1.0 and result["kept_shape"] == 1.0 and result["kept_position"] == 1.0
    assert result["success"] == 1.0 and result["count"] == 4


def test_a_changed_shape_or_a_moved_centroid_is_not_kept():
    before = scenes([0, 0, 0], [0, 0, 0])
    blue = COLOURS.index("blue")
    moved = draw_scenes(3, 3, colour=torch.full((3,), blue), shape=before.shape)
    inward = torch.sign(16 - moved.centre[1, 0])  # toward the middle, so the moved shape stays whole
    shift = torch.tensor([[0.0, 0.0], [float(inward * (POSITION_PIXELS + 2)), 0.0], [0.0, 0.0]])
    moved = dataclasses.replace(moved, centre=moved.centre + shift, shape=torch.tensor([0, 0, SHAPES.index("square")]))
    result = score(judge(render(before)), judge(render(moved)), Aim(colour="blue"), 32)
    assert result["per_edit"]["kept_position"] == [True, False, True]
    assert result["per_edit"]["kept_shape"] == [True, True, False]
    assert result["per_edit"]["success"] == [True, False, False]
    assert result["success"] == pytest.approx(1 / 3)


def test_an_edit_toward_the_wrong_colour_is_not_reached():
    before = scenes([0, 0], [1, 1])
    after = draw_scenes(2, 3, colour=torch.full((2,), COLOURS.index("green")), shape=before.shape)
    result = score(judge(render(before)), judge(render(after)), Aim(colour="blue"), 32)
    assert result["reached"] == 0.0 and result["success"] == 0.0


class ReadsScenes:
    """A stand-in CLIP that embeds a picture as the one-hot of its scene's colour and shape (the pictures it is given
    are looked up by position), and each zero-shot prompt as the one-hot of the word it names."""

    def __init__(self, scene):
        self.features = torch.cat([torch.eye(len(COLOURS))[scene.colour], torch.eye(len(SHAPES))[scene.shape]], dim=1)

    def encode_image(self, images):
        return self.features[: len(images)]

    def encode_text(self, texts):
        words = COLOURS + SHAPES
        return torch.stack([torch.eye(len(words))[words.index(text.split()[-1])] for text in texts])


def test_clip_reached_counts_the_pictures_whose_zero_shot_reading_shows_every_named_attribute():
    scene = draw_scenes(4, seed=0, colour=torch.tensor([0, 0, 1, 0]), shape=torch.tensor([0, 1, 0, 0]))
    clip, pictures = ReadsScenes(scene), render(scene)
    assert clip_reached(clip, pictures, Aim(colour=COLOURS[0])) == 0.75
    assert clip_reached(clip, pictures, Aim(shape=SHAPES[0])) == 0.75
    assert clip_reached(clip, pictures, Aim(COLOURS[0], SHAPES[0])) == 0.5
    assert clip_reached(clip, pictures, Aim(colour=COLOURS[2])) == 0.0


def test_video_frames_are_scored_inside_words_and_in_pauses():
    source_scene = scenes([SHAPES.index("circle")] * 1, [0])  # a red circle
    red = render(source_scene)[0]
    blue = render(draw_scenes(1, 3, colour=torch.tensor([COLOURS.index("blue")]), shape=source_scene.shape))[0]
    words = [{"word": "blue", "start": 1.0, "end": 2.0}]
    times = np.arange(0, 5, 0.25)
    # Blue from the word's start + lag to its end + lag, except one frame; red elsewhere.
    frames = [(t, blue if 1.5 <= t <= 2.5 and t != 2.0 else red) for t in times]
    result = judged_video(frames, red, words, lag=0.5, window=1.0, duration=5.0)
    inside = [t for t in times if 1.5 <= t <= 2.5]
    assert result["words"]["blue@1.0s"]["frames"] == len(inside)
    assert result["word_frames_coloured"] == pytest.approx((len(inside) - 1) / len(inside))
    # A keyframe k hears the word when its window [k - 0.5, k + 0.5] touches [1, 2]: 0.5 <= k <= 2.5. A frame is in a
    # pause when neither keyframe around it does: from 3.0 s on.
    pauses = [t for t in times if t >= 3.0]
    assert result["pause_frames"] == len(pauses) and result["pause_frames_at_source"] == 1.0


def test_a_frame_whose_keyframe_window_is_shifted_back_onto_a_word_is_no_pause():
    red = render(scenes([SHAPES.index("circle")], [0]))[0]
    words = [{"word": "blue", "start": 3.0, "end": 3.8}]
    # A 5.5 s track: the last keyframe's 2 s window is kept inside it, [3.5, 5.5], and hears the word's end; so do all
    # keyframes from 2.0 s on. Only frames before 1.5 s are in a pause, though 5.375 s is window / 2 + lag past the word.
    frames = [(t, red) for t in np.arange(0, 5.5, 0.125)]
    result = judged_video(frames, red, words, lag=0.5, window=2.0, duration=5.5)
    assert result["pause_frames"] == len(np.arange(0, 1.5, 0.125))


# steps auto with a short rule: a batch of two and one image alone run kernels that round differently, and Adam
# amplifies those roundings step by step (the same two seeds, 200 fixed steps, end 0.017 apart: no error model bounds
# that), while within 40 steps they stay near float32 rounding.
SHORT_AUTO_RULE = FlatteningRule(window=5, min_improvement=0.0005, min_steps=10, max_steps=40, cooldown=5)


@pytest.mark.parametrize("masking, steps", [(False, 3), (True, 3), (False, "auto")])
def test_judged_edits_are_the_pictures_sgsim_edit_makes_with_the_same_settings(editor, masking, steps, monkeypatch):
    """edit_seeds (what every judged edit check runs) against Editor.edit one seed at a time: it once left out
    adaptive layer masking, so its curve measured the same edits twice. With steps auto each seed stops where it
    would alone."""
    from sgsim.editing import Target, stopping
    from sgsim.editing.sources import SeedSource
    from sgsim.settings import EditSettings
    from sgsim.worlds.judged import edit_seeds

    monkeypatch.setattr(stopping, "AUTO_RULE", SHORT_AUTO_RULE)
    settings = EditSettings(steps=steps, adaptive_layer_masking=masking, precision="fp32")
    edited = edit_seeds(editor, [(Target(text="rain"), [3, 4])], settings)
    (before, after), = edited.pictures
    for row, seed in enumerate((3, 4)):
        alone = editor.edit(SeedSource(seed), Target(text="rain"), settings)
        torch.testing.assert_close(after[row], alone.images[0, 0], rtol=0, atol=1e-4)
        assert edited.steps_used[0][row] == alone.settings["steps_used"][0]
