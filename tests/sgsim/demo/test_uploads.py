"""What the demo accepts from a browser: only files in its upload folder, within limits, with one-line reasons."""

from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile
from PIL import Image

from sgsim.demo.uploads import UploadLimits, check_image, check_latent, check_sound, public_message, uploaded_file
from sgsim.errors import SgsimError


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "uploads" / "abc").mkdir(parents=True)
    return tmp_path / "uploads"


def test_a_file_inside_the_upload_folder_is_accepted(folder):
    (folder / "abc" / "rain.wav").write_bytes(b"x")
    assert uploaded_file(str(folder / "abc" / "rain.wav"), folder) == (folder / "abc" / "rain.wav").resolve()


@pytest.mark.parametrize("case", ["absolute", "dot-dot", "symlink", "sibling prefix", "folder"])
def test_a_path_outside_the_upload_folder_is_refused(folder, tmp_path, case):
    (tmp_path / "secret.txt").write_text("not yours")
    (tmp_path / "uploads-other").mkdir()
    (tmp_path / "uploads-other" / "x.wav").write_bytes(b"x")
    os.symlink(tmp_path / "secret.txt", folder / "abc" / "link.wav")
    path = {"absolute": tmp_path / "secret.txt", "dot-dot": folder / "abc" / ".." / ".." / "secret.txt",
            "symlink": folder / "abc" / "link.wav", "sibling prefix": tmp_path / "uploads-other" / "x.wav",
            "folder": folder / "abc"}[case]
    with pytest.raises(SgsimError, match="only files uploaded through this page|not an uploaded file"):
        uploaded_file(str(path), folder)


def _sound(path, seconds: float, amplitude: float = 0.1, rate: int = 16000):
    soundfile.write(path, amplitude * np.sin(np.arange(int(seconds * rate)) * 0.05).astype(np.float32), rate)
    return path


@pytest.mark.parametrize("case, expected", [
    ("corrupt", "cannot"),
    ("not audio", "cannot"),
    ("empty", "empty (0 bytes)"),
    ("silent", "the sound is silent"),
    ("too long", "over the demo's 2 s limit"),
    ("too large", "over the demo's 0.01 MB limit"),
])
def test_bad_sounds_are_refused_with_one_line_naming_the_file(tmp_path, case, expected):
    path = tmp_path / "visitor.wav"
    if case == "corrupt":
        path.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(20))
    elif case == "not audio":
        Image.new("RGB", (8, 8)).save(path, format="PNG")
    elif case == "empty":
        path.write_bytes(b"")
    else:
        _sound(path, 3.0 if case == "too long" else 1.0, amplitude=0.0 if case == "silent" else 0.1)
    limits = UploadLimits(max_sound_seconds=2.0, max_file_mb=0.01 if case == "too large" else 20.0)
    with pytest.raises(SgsimError) as error:
        check_sound(path, limits, "visitor.wav")
    message = public_message(error.value, path, "visitor.wav")
    assert expected in message and "visitor.wav" in message and "\n" not in message and str(tmp_path) not in message


def test_a_sound_within_the_limits_passes(shared_data):
    check_sound(shared_data / "audio" / "raining.wav", UploadLimits(), "raining.wav")


@pytest.mark.parametrize("case, expected", [("too many pixels", "300x200 pixels, over the demo's limit of 59,999 pixels"), ("not an image", "not an image"),
                                            ("a GIF claiming 65535x65535", "claims more pixels than the demo's limit of 59,999")])
def test_bad_photos_are_refused_from_their_header(tmp_path, gif_claiming, case, expected):
    path = tmp_path / "photo.png"
    if case == "not an image":
        path.write_bytes(b"GIF89a but not really" * 10)
    elif case == "a GIF claiming 65535x65535":
        path.write_bytes(gif_claiming(65535, 65535))
    else:
        Image.new("RGB", (300, 200)).save(path)
    with pytest.raises(SgsimError, match=expected):
        check_image(path, UploadLimits(max_image_pixels=300 * 200 - 1), "photo.png")
    Image.new("RGB", (300, 200)).save(path)
    check_image(path, UploadLimits(max_image_pixels=300 * 200), "photo.png")


@pytest.mark.parametrize("case, expected", [
    ("zip bomb", "unpacks to 64 MB, over the demo's 16 MB for a latent file"),
    ("not a zip", "is not a readable .npz latent file"),
])
def test_bad_latent_files_are_refused_before_anything_is_inflated(tmp_path, case, expected):
    path = tmp_path / "latent.npz"
    if case == "zip bomb":  # 64 MB of zeros, compressed to well under the upload limit
        np.savez_compressed(path, w=np.zeros(16 << 20, np.float32))
    else:
        path.write_bytes(b"PK but not a zip" * 10)
    with pytest.raises(SgsimError) as error:
        check_latent(path, UploadLimits(max_latent_unpacked_mb=16), "latent.npz")
    message = public_message(error.value, path, "latent.npz")
    assert expected in message and "\n" not in message and str(tmp_path) not in message
    np.savez(path, w=np.zeros((8, 32), np.float32))
    check_latent(path, UploadLimits(max_latent_unpacked_mb=16), "latent.npz")
