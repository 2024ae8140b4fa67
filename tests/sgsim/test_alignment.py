"""sgsim.alignment: FFHQ's crop geometry, its warp undoing a known similarity transform, and dlib on a real face."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.ndimage
from PIL import Image

from sgsim.alignment import FaceLandmarks, align_face, ffhq_quad, should_align
from sgsim.errors import SgsimError

FACES = Path(__file__).resolve().parents[1] / "data" / "faces"
SIZE = 64

# An upright face whose FFHQ quad is exactly the SIZE x SIZE canvas in pixel-index coordinates (centres at
# integers, so the canvas spans -0.5 .. 63.5): eyes 16 px apart (half side 2 * 16 = 32 beats 1.8 * 16 = 28.8),
# mouth 16 px below the eyes, crop centre 0.1 * 16 below the eyes' midpoint.
CENTRE = (SIZE - 1) / 2
CANONICAL = FaceLandmarks(
    eye_left=np.array([CENTRE - 8, CENTRE - 1.6]), eye_right=np.array([CENTRE + 8, CENTRE - 1.6]),
    mouth_left=np.array([CENTRE - 6, CENTRE + 14.4]), mouth_right=np.array([CENTRE + 6, CENTRE + 14.4]),
)


def _similarity(scale: float, degrees: float, shift: tuple[float, float]):
    turn = math.radians(degrees)
    matrix = scale * np.array([[math.cos(turn), -math.sin(turn)], [math.sin(turn), math.cos(turn)]])
    return lambda points: np.asarray(points, dtype=np.float64) @ matrix.T + np.asarray(shift)


def _moved(face: FaceLandmarks, transform) -> FaceLandmarks:
    return FaceLandmarks(*(transform(point) for point in (face.eye_left, face.eye_right, face.mouth_left, face.mouth_right)))


def _canonical_picture() -> np.ndarray:
    """Smooth colour blobs on a gradient, [SIZE, SIZE, 3] float in 0..255: resampling barely changes it."""
    ys, xs = np.mgrid[:SIZE, :SIZE] / SIZE
    red = 60 + 120 * xs
    green = 80 + 100 * np.exp(-((xs - 0.35) ** 2 + (ys - 0.4) ** 2) / 0.02)
    blue = 50 + 150 * ys * np.exp(-((xs - 0.7) ** 2 + (ys - 0.7) ** 2) / 0.05)
    return np.stack([red, green, blue], axis=-1)


def _photo_of(picture: np.ndarray, transform, side: int) -> Image.Image:
    """The picture mapped into a side x side photo by `transform` (picture coordinates -> photo coordinates),
    mirrored beyond its edges, as a camera at another distance, angle and position would see it."""
    inverse = np.linalg.inv(np.array([transform([1, 0]) - transform([0, 0]), transform([0, 1]) - transform([0, 0])]).T)
    ys, xs = np.mgrid[:side, :side].astype(np.float64)
    source = (np.stack([xs.ravel(), ys.ravel()], axis=1) - transform([0, 0])) @ inverse.T
    channels = [scipy.ndimage.map_coordinates(picture[..., c], [source[:, 1], source[:, 0]], order=1, mode="mirror")
                for c in range(3)]
    return Image.fromarray(np.uint8(np.clip(np.rint(np.stack(channels, axis=1).reshape(side, side, 3)), 0, 255)))


def test_quad_of_an_upright_face_is_the_recipe_square():
    quad = ffhq_quad(CANONICAL)
    low, high = -0.5, SIZE - 0.5
    np.testing.assert_allclose(quad, [[low, low], [low, high], [high, high], [high, low]], atol=1e-9)


def test_mouth_distance_sets_the_size_when_it_dominates():
    face = FaceLandmarks(np.array([45.0, 50.0]), np.array([55.0, 50.0]), np.array([47.0, 90.0]), np.array([53.0, 90.0]))
    quad = ffhq_quad(face)
    side = 2 * 1.8 * 40  # eye-to-mouth 40 px beats eye-to-eye 10 px
    np.testing.assert_allclose(quad[2] - quad[0], [side, side], atol=1e-9)
    np.testing.assert_allclose(quad.mean(0), [50.0, 50.0 + 0.1 * 40], atol=1e-9)


@pytest.mark.parametrize("scale, degrees, shift", [(3.0, 20.0, (40.0, 60.0)), (0.5, -35.0, (10.0, 5.0)), (7.0, 180.0, (0.0, 0.0))])
def test_quad_follows_a_similarity_transform_of_the_face(scale, degrees, shift):
    transform = _similarity(scale, degrees, shift)
    np.testing.assert_allclose(ffhq_quad(_moved(CANONICAL, transform)), transform(ffhq_quad(CANONICAL)), atol=1e-9)


def test_ibug68_points_give_eye_centres_and_mouth_corners():
    points = np.zeros((68, 2))
    points[36:42] = [[10, 20], [12, 18], [14, 18], [16, 20], [14, 22], [12, 22]]
    points[42:48] = points[36:42] + [30, 2]
    points[48], points[54], points[51] = [15, 50], [41, 52], [99, 99]
    face = FaceLandmarks.from_ibug68(points)
    np.testing.assert_allclose(face.eye_left, [13, 20])
    np.testing.assert_allclose(face.eye_right, [43, 22])
    np.testing.assert_allclose(face.mouth_left, [15, 50])
    np.testing.assert_allclose(face.mouth_right, [41, 52])
    with pytest.raises(SgsimError, match=r"\[68, 2\]"):
        FaceLandmarks.from_ibug68(points[:5])


@pytest.mark.parametrize("scale, degrees, side", [
    (3.0, 20.0, 300),  # cut out of the photo, no shrinking
    (8.0, -30.0, 800),  # the photo is shrunk 4x first (crop 512 px for a 64 px output)
])
def test_alignment_undoes_a_similarity_transform(scale, degrees, side):
    picture = _canonical_picture()
    centre = np.array([side / 2, side / 2])
    transform = _similarity(scale, degrees, tuple(centre - _similarity(scale, degrees, (0, 0))([CENTRE, CENTRE])))
    aligned = align_face(_photo_of(picture, transform, side), _moved(CANONICAL, transform), SIZE)
    assert aligned.size == (SIZE, SIZE) and aligned.mode == "RGB"
    error = np.abs(np.asarray(aligned, dtype=np.float64) - picture)[2:-2, 2:-2]  # the outer pixels see resampling edges
    assert error.mean() < 2.0 and error.max() < 12.0
    rotated_back = np.asarray(align_face(_photo_of(picture, transform, side), _moved(CANONICAL, _similarity(scale, degrees + 90, tuple(transform([0, 0])))), SIZE), dtype=np.float64)
    assert np.abs(rotated_back - picture)[2:-2, 2:-2].mean() > 10 * error.mean()  # wrong landmarks give a wrong crop


def test_a_face_at_the_photo_edge_is_padded_with_a_blurred_mirror():
    picture = _canonical_picture()
    transform = _similarity(2.0, 0.0, (-40.0, 20.0))  # the left third of the crop lies outside the 160 px photo
    photo = _photo_of(picture, transform, 160)
    photo_pixels = np.asarray(photo, dtype=np.float64).copy()
    photo_pixels[:, :8] = 0  # a dark frame edge: plain mirroring would copy it into the crop as a sharp stripe
    aligned = np.asarray(align_face(Image.fromarray(np.uint8(photo_pixels)), _moved(CANONICAL, transform), SIZE), dtype=np.float64)
    inside = slice(36, SIZE - 2)  # crop columns 36.. come from photo columns 32.. (past the dark edge)
    assert np.abs(aligned[2:-2, inside] - picture[2:-2, inside]).mean() < 2.0
    padded = aligned[:, :16]  # photo x < -8: padding
    assert padded.min() > 20  # blurred toward the median, not the frame's black
    assert np.abs(np.diff(padded, axis=1)).max() < np.abs(np.diff(picture, axis=1)).max() + 5


def test_should_align_defaults_to_the_ffhq_aligned_generators():
    assert should_align("ffhq", None) and should_align("metfaces", None)
    assert not should_align("landscape", None) and not should_align("/models/ffhq.pkl", None)
    assert should_align("landscape", True) and not should_align("ffhq", False)


# dlib's 68-point model (the 'faces' extra)


def test_detects_and_aligns_a_real_face():
    pytest.importorskip("dlib")
    pytest.importorskip("face_recognition_models")
    from sgsim.alignment import detect_face, read_face
    from sgsim.images import open_rgb

    face = detect_face(open_rgb(FACES / "astronaut.jpg"))
    # Pupils and outer mouth corners read off an 8x overlay of the 256 px photo (tests/data/faces/README.md), +-3 px.
    np.testing.assert_allclose(face.eye_left, [101, 51], atol=3)
    np.testing.assert_allclose(face.eye_right, [123, 52], atol=3)
    np.testing.assert_allclose(face.mouth_left, [100, 69], atol=3)
    np.testing.assert_allclose(face.mouth_right, [122, 70], atol=3)
    with pytest.warns(UserWarning, match="face crop is 8[0-9] px"):
        target = read_face(FACES / "astronaut.jpg", 256)
    assert target.shape == (1, 3, 256, 256) and -1 <= float(target.min()) and float(target.max()) <= 1


def test_a_photo_without_a_face_is_one_error_suggesting_no_align(tmp_path):
    pytest.importorskip("dlib")
    pytest.importorskip("face_recognition_models")
    from sgsim.alignment import read_face

    Image.fromarray(np.uint8(_canonical_picture())).resize((200, 200)).save(tmp_path / "blobs.png")
    with pytest.raises(SgsimError, match=r"no face found in .*blobs\.png; pass --no-align"):
        read_face(tmp_path / "blobs.png", 32)


def test_missing_landmark_model_names_the_extra_and_no_align(monkeypatch):
    from sgsim import alignment

    alignment._landmark_model.cache_clear()
    monkeypatch.setitem(sys.modules, "dlib", None)  # import dlib now raises ImportError
    try:
        with pytest.raises(SgsimError, match=r"needs dlib: pip install 'sgsim\[faces\]'.*--no-align"):
            alignment.detect_face(Image.new("RGB", (32, 32)))
    finally:
        alignment._landmark_model.cache_clear()


def test_a_file_that_says_it_holds_faces_is_aligned_as_its_preset_says():
    from sgsim.alignment import alignment
    from sgsim.editing.presets import preset_choice

    metadata = {"dataset": "/data/ffhq-256x256.zip"}
    align, reason = alignment("/models/unknown.pkl", None, metadata)
    assert align and "aligning the face" in reason and "ffhq-256x256" in reason
    assert preset_choice(None, "/models/unknown.pkl", metadata).name == "ffhq"  # one rule: the preset agrees
    assert alignment("/models/unknown.pkl", None, {"dataset": "lsun-church"}) == (
        False, "centre crop: not a face generator (no preset for the generator '/models/unknown.pkl' (trained on 'lsun-church'))")
    assert alignment("ffhq", False, metadata) == (False, "centre crop (asked for)")
