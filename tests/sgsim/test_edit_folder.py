"""An edit's folder (sgsim.editing.folder): the comparison grid's layout and labels, the video, and EditResult's API."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from sgsim.editing import Target
from sgsim.editing.editor import EditResult
from sgsim.editing.folder import comparison_rows, optimisation_frames, write_edit_folder
from sgsim.errors import SgsimError
from sgsim.outputs import LABEL_BAND, font_size_for, tile_size

SIDE = 32  # tiny generator images


def _result(loudness: bool = False, frames: int = 3) -> EditResult:
    """A two-target, three-strength result with known pixels: target t at strength s is one grey level."""
    T, S = 2, 3
    levels = torch.linspace(-1, 1, T * S).reshape(T, S, 1, 1, 1)
    images = levels.expand(T, S, 3, SIDE, SIDE).clone()
    scale = [0.64, 1.3] if loudness else [1.0, 1.0]
    asked = [0.5, 1.0, 1.5]
    return EditResult(
        images=images, latents=torch.zeros(T, S, 4, 8), edited_latents=torch.zeros(T, 4, 8), source_latent=torch.zeros(4, 8),
        source_image=torch.full((3, SIDE, SIDE), -1.0), strengths=torch.tensor(scale)[:, None] * torch.tensor(asked)[None],
        losses={"total": np.ones((5, T)), "clip": np.ones((5, T))}, guides=["raining.wav", "a snowy mountain"],
        targets=[Target(audio="sounds/raining.wav", text="at night"), Target(text="a snowy mountain")],
        settings={"steps": 5, "strengths": asked, "mix": "weighted", "loudness_strength": loudness, "record_every": 2,
                  "loudness_dbfs": [-26.4, None], "loudness_scale": scale},
        frames=[torch.zeros(T, 3, SIDE, SIDE)] * frames,
    )


def test_rows_are_targets_and_captions_say_the_strength_applied():
    rows = comparison_rows(_result(loudness=True))
    assert [row.title for row in rows] == ["raining.wav + “at night”  ·  -26 dBFS: strengths ×0.64", "“a snowy mountain”"]
    assert rows[0].captions == ["source", "s0.5 → 0.32", "s1 → 0.64", "s1.5 → 0.96"]
    assert rows[1].captions == ["source", "s0.5 → 0.65", "s1 → 1.3", "s1.5 → 1.95"]
    assert comparison_rows(_result())[0].captions == ["source", "strength 0.5", "strength 1", "strength 1.5"]


def test_comparison_is_a_grid_of_scaled_tiles_under_their_labels(tmp_path):
    names = write_edit_folder(tmp_path, _result())
    tile = tile_size(SIDE)
    band = round(font_size_for(tile) * LABEL_BAND)
    assert tile == 128 and font_size_for(1024 // 4) == 16  # small images grow, 1024 px ones shrink to 256 with 16 px labels
    pixels = np.asarray(Image.open(tmp_path / "comparison.png").convert("RGB"), dtype=np.int16)
    row_height = 2 * band + tile
    assert pixels.shape == (2 * row_height, 4 * tile, 3)
    levels = np.floor((np.linspace(-1, 1, 6) * 127.5 + 128).clip(0, 255)).astype(np.int16).reshape(2, 3)  # as NVIDIA quantises
    for t in range(2):
        top = t * row_height
        assert (pixels[top:top + band] < 100).any()  # the row's title
        for c in range(4):
            caption = pixels[top + band:top + 2 * band, c * tile:(c + 1) * tile]
            assert (caption < 100).any() and (caption[:, -2:] == 255).all()  # a caption that stays inside its column
            cell = pixels[top + 2 * band:top + row_height, c * tile:(c + 1) * tile]
            assert (cell == (0 if c == 0 else levels[t, c - 1])).all()
    assert names == ["source.png", "raining_s0.5.png", "raining_s1.png", "raining_s1.5.png", "a_snowy_mountain_s0.5.png",
                     "a_snowy_mountain_s1.png", "a_snowy_mountain_s1.5.png", "comparison.png", "latents.npz", "run.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["outputs"] == names and record["settings"]["strengths"] == [0.5, 1.0, 1.5]
    assert record["targets"][1] == {"audio": None, "text": "a snowy mountain"}


@pytest.mark.parametrize("video", ["mp4", "gif"])
def test_the_video_shows_the_source_and_a_labelled_tile_per_guide_under_the_step(tmp_path, video):
    result = _result(frames=3)
    frames = list(optimisation_frames(result))
    band = round(font_size_for(128) * LABEL_BAND)
    assert len(frames) == 3 and frames[0].shape == (2 * band + 128, 3 * 128, 3)  # step band, captions, source + 2 guides
    assert not np.array_equal(frames[0][:band], frames[1][:band])  # the step counter changes
    assert np.array_equal(frames[0][band:], frames[1][band:])  # the pictures and captions (all equal here) do not
    result.save(tmp_path, video=video)
    if video == "gif":
        with Image.open(tmp_path / "optimisation.gif") as gif:
            assert gif.n_frames == 3 and gif.size == (3 * 128, frames[0].shape[0])
    else:
        import av

        with av.open(str(tmp_path / "optimisation.mp4")) as container:
            assert sum(1 for _ in container.decode(video=0)) == 3


def test_a_video_needs_frames_and_a_known_format(tmp_path):
    with pytest.raises(SgsimError, match="no optimisation frames"):
        write_edit_folder(tmp_path / "a", _result(frames=0), video="mp4")
    with pytest.raises(SgsimError, match="unknown video format"):
        write_edit_folder(tmp_path / "b", _result(), video="avi")


def test_an_image_source_shows_the_photo_and_its_reconstruction_first():
    result = _result()
    result.input_image = torch.ones(3, SIDE, SIDE)
    rows = comparison_rows(result)
    assert rows[0].captions[:3] == ["input photo", "reconstruction", "strength 0.5"]
    assert torch.equal(rows[0].tiles[0], result.input_image) and torch.equal(rows[0].tiles[1], result.source_image)


def test_repr_is_one_short_line_and_pil_gives_the_grid_or_one_image():
    result = _result()
    text = repr(result)
    assert "\n" not in text and "tensor(" not in text and len(text) < 300
    assert "2 targets x 3 strengths of 32x32 images" in text
    assert result.pil().size == (4 * 128, 2 * (2 * round(font_size_for(128) * LABEL_BAND) + 128))
    assert result.pil(1, 2).size == (SIDE, SIDE) and np.asarray(result.pil(1, 2)).max() == 255
