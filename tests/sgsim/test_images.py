"""sgsim.images: every kind of user image reads as an upright, centred, generator-sized tensor; bad files fail by name."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from sgsim.errors import ImageError
from sgsim.images import read_image
from sgsim.outputs import GridRow, to_uint8, write_grid_rows, write_png


def _pixels(tensor: torch.Tensor) -> np.ndarray:
    """[1, 3, H, W] in [-1, 1] back to [H, W, 3] on the 0..255 scale."""
    return ((tensor[0].permute(1, 2, 0) + 1.0) * 127.5).numpy()


def test_rgb_png_reads_exactly_at_generator_resolution(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    image = read_image(tmp_path / "a.png", 16)
    assert image.shape == (1, 3, 16, 16) and image.dtype == torch.float32
    assert float(image.min()) >= -1.0 and float(image.max()) <= 1.0
    np.testing.assert_allclose(_pixels(image), pixels, atol=1e-4)


def test_landscape_image_is_centre_cropped(tmp_path):
    pixels = np.zeros((8, 24, 3), dtype=np.uint8)
    pixels[:, 8:16] = 200  # only the centre 8x8 square is bright
    Image.fromarray(pixels).save(tmp_path / "wide.png")
    image = read_image(tmp_path / "wide.png", 8)
    np.testing.assert_allclose(_pixels(image), 200, atol=1e-4)


def test_exif_rotated_jpeg_is_read_upright(tmp_path):
    stored = np.zeros((16, 32, 3), dtype=np.uint8)
    stored[:, :16] = 255  # left half white as stored; EXIF orientation 6 means "rotate 90 degrees clockwise to view"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(tmp_path / "phone.jpg", exif=exif.tobytes(), quality=95)
    upright = _pixels(read_image(tmp_path / "phone.jpg", 16))
    assert upright.shape == (16, 16, 3)
    # After the clockwise turn the stored left half is on top: the top rows are bright, the bottom ones dark.
    assert upright[:4].mean() > 200 and upright[-4:].mean() < 55


def test_rgba_png_is_composited_on_white(tmp_path):
    rgba = np.zeros((8, 8, 4), dtype=np.uint8)
    rgba[..., 0] = 255
    rgba[:, :4, 3] = 255  # left half opaque red, right half fully transparent
    Image.fromarray(rgba).save(tmp_path / "alpha.png")
    pixels = _pixels(read_image(tmp_path / "alpha.png", 8))
    np.testing.assert_allclose(pixels[:, :4], np.broadcast_to([255, 0, 0], (8, 4, 3)), atol=1e-4)
    np.testing.assert_allclose(pixels[:, 4:], 255, atol=1e-4)


def test_grayscale_becomes_three_equal_channels(tmp_path):
    gray = np.arange(64, dtype=np.uint8).reshape(8, 8) * 3
    Image.fromarray(gray).save(tmp_path / "gray.png")
    pixels = _pixels(read_image(tmp_path / "gray.png", 8))
    for channel in range(3):
        np.testing.assert_allclose(pixels[..., channel], gray, atol=1e-4)


def test_sixteen_bit_grayscale_is_scaled_to_eight_bits(tmp_path):
    deep = np.full((8, 8), 257 * 100, dtype=np.uint16)  # 100 on the 8-bit scale
    Image.fromarray(deep).save(tmp_path / "deep.png")
    with Image.open(tmp_path / "deep.png") as check:
        assert check.mode in ("I", "I;16")
    np.testing.assert_allclose(_pixels(read_image(tmp_path / "deep.png", 8)), 100, atol=1e-4)


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(tmp_path / "print.jpg", quality=100)  # pure red in ink
    pixels = _pixels(read_image(tmp_path / "print.jpg", 8))
    assert pixels[..., 0].mean() > 230 and pixels[..., 1].mean() < 25 and pixels[..., 2].mean() < 25


def test_palette_with_transparency_is_composited_on_white(tmp_path):
    palette = Image.new("P", (8, 8), 0)
    palette.putpalette([0, 0, 255] + [0, 0, 0] * 255)
    palette.info["transparency"] = 0
    palette.save(tmp_path / "icon.gif", transparency=0)
    np.testing.assert_allclose(_pixels(read_image(tmp_path / "icon.gif", 8)), 255, atol=1e-4)


def test_large_image_is_downscaled_without_aliasing(tmp_path):
    stripes = np.zeros((64, 64, 3), dtype=np.uint8)
    stripes[:, ::2] = 255  # one-pixel stripes average to mid-gray when shrunk with a proper filter
    Image.fromarray(stripes).save(tmp_path / "stripes.png")
    pixels = _pixels(read_image(tmp_path / "stripes.png", 8))
    assert abs(pixels.mean() - 127.5) < 3 and pixels.std() < 10


def test_tiny_image_warns_about_upscaling(tmp_path):
    Image.new("RGB", (6, 6), (10, 20, 30)).save(tmp_path / "tiny.png")
    with pytest.warns(UserWarning, match="tiny.png"):
        image = read_image(tmp_path / "tiny.png", 32)
    assert image.shape == (1, 3, 32, 32)


def test_moderate_upscaling_does_not_warn(tmp_path):
    Image.new("RGB", (20, 20)).save(tmp_path / "ok.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_image(tmp_path / "ok.png", 32)


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_truncated_file_is_an_error_naming_it(tmp_path, suffix):
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)).save(tmp_path / f"full{suffix}")
    data = (tmp_path / f"full{suffix}").read_bytes()
    (tmp_path / f"cut{suffix}").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match=f"cut{suffix}"):
        read_image(tmp_path / f"cut{suffix}", 16)


def test_truncated_file_is_refused_even_if_pillow_was_told_to_allow_it(tmp_path, monkeypatch):
    from PIL import ImageFile

    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    rng = np.random.default_rng(2)
    Image.fromarray(rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)).save(tmp_path / "full.jpg")
    (tmp_path / "cut.jpg").write_bytes((tmp_path / "full.jpg").read_bytes()[:-2000])
    with pytest.raises(ImageError, match="truncated"):
        read_image(tmp_path / "cut.jpg", 16)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # the caller's setting is restored


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_text("just some notes\n"), "not an image"),
        (lambda p: p.write_bytes(b""), "empty"),
        (lambda p: p.mkdir(), "folder"),
        (lambda p: None, "not found"),
    ],
    ids=["text", "zero-bytes", "directory", "missing"],
)
def test_unusable_paths_are_errors_naming_the_file(tmp_path, make, message):
    path = tmp_path / "face.png"
    make(path)
    with pytest.raises(ImageError, match=message) as caught:
        read_image(path, 16)
    assert "face.png" in str(caught.value)


def test_decompression_bomb_is_an_error_naming_the_file(tmp_path, monkeypatch):
    Image.new("RGB", (32, 32)).save(tmp_path / "huge.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # Pillow refuses images over twice this many pixels
    with pytest.raises(ImageError, match="huge.png is too large"):
        read_image(tmp_path / "huge.png", 16)


def test_to_uint8_matches_nvidia_rounding():
    values = torch.tensor([-1.5, -1.0, 0.0, 1.0, 1.5]).view(1, 1, 1, 5).expand(1, 3, 1, 5)
    np.testing.assert_array_equal(to_uint8(values)[0, 0, :, 0], [0, 0, 128, 255, 255])


def test_png_round_trip_is_exact_for_eight_bit_values(tmp_path):
    levels = torch.randint(0, 256, (1, 3, 8, 8), generator=torch.Generator().manual_seed(3)).float()
    image = levels / 127.5 - 1.0
    write_png(tmp_path / "out" / "x.png", image)
    assert torch.equal(read_image(tmp_path / "out" / "x.png", 8), image)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["x.png"]  # no temporary file left behind


def test_grid_places_images_side_by_side_under_labels(tmp_path):
    black = torch.full((1, 3, 8, 8), -1.0)
    white = torch.ones(1, 3, 8, 8)
    write_grid_rows(tmp_path / "grid.png", [GridRow([black, white], ["source", "edited"])])
    with Image.open(tmp_path / "grid.png") as grid:
        pixels = np.asarray(grid.convert("RGB"))
    assert pixels.shape[1] == 16 and pixels.shape[0] > 8
    np.testing.assert_array_equal(pixels[-8:, :8], 0)
    np.testing.assert_array_equal(pixels[-8:, 8:], 255)
    assert (pixels[:-8] < 128).any()  # some label text is drawn above the tiles


def test_grid_needs_one_caption_per_tile(tmp_path):
    with pytest.raises(ImageError, match="one caption per tile"):
        write_grid_rows(tmp_path / "grid.png", [GridRow([torch.zeros(1, 3, 4, 4)], ["a", "b"])])
