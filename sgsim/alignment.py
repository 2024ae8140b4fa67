"""FFHQ-style face alignment: crop a photo the way NVIDIA cropped the FFHQ faces, so that a face generator
(and the ArcFace identity loss, trained on such crops) sees the photo framed like its training images.

Landmarks come from dlib's 68-point shape predictor, the landmark model FFHQ itself was aligned with. The
model file ships inside the `face_recognition_models` package and dlib as the `dlib-bin` wheel, so nothing
is downloaded at run time: `pip install 'sgsim[faces]'`.
"""

from __future__ import annotations

import functools
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
import scipy.ndimage
import torch
from PIL import Image

from sgsim.errors import SgsimError, SgsimNotice


# The FFHQ recipe (NVlabs ffhq-dataset, recreate_aligned_images).
EYE_SCALE = 2.0  # the crop's half side is at least this many eye-to-eye distances ...
MOUTH_SCALE = 1.8  # ... and at least this many eye-to-mouth distances
CENTRE_SHIFT = 0.1  # the crop centre lies this fraction of the eye-to-mouth vector below the eyes' midpoint
BORDER_FRACTION = 0.1  # margin kept around the crop when cutting and padding, as a fraction of its side ...
MIN_BORDER = 3  # ... and at least this many pixels
PAD_FRACTION = 0.3  # once the crop leaves the photo, every side is mirror-padded by at least this fraction of its side
BLUR_FRACTION = 0.02  # sigma of the blur that hides the mirrored padding, as a fraction of the crop's side
TRANSFORM_OVERSAMPLE = 4  # warp at 4x the output side, then downsample (FFHQ: 4096 px, then 1024 px)

# Points of the 68-point iBUG 300-W markup that dlib's predictor returns.
IMAGE_LEFT_EYE = slice(36, 42)  # the subject's right eye
IMAGE_RIGHT_EYE = slice(42, 48)
MOUTH_CORNERS = (48, 54)  # image-left, image-right outer corners

DETECT_MAX_SIDE = 1024  # photos are searched for faces at most this large (the HOG detector slows with area)
_MAX_UPSCALE = 2.0  # a face crop upscaled by more than this looks soft: worth a warning

FACES_EXTRA_HINT = "pip install 'sgsim[faces]' (dlib-bin and face_recognition_models), or pass --no-align to invert a centre crop"


@dataclass(frozen=True)
class FaceLandmarks:
    """The four points FFHQ's alignment uses, in image pixels (x, y); 'left' and 'right' as seen in the image."""

    eye_left: np.ndarray
    eye_right: np.ndarray
    mouth_left: np.ndarray
    mouth_right: np.ndarray

    @classmethod
    def from_ibug68(cls, points: np.ndarray) -> FaceLandmarks:
        """From the [68, 2] points of dlib's shape predictor: eye centres are the means of each eye's six points."""
        points = np.asarray(points, dtype=np.float64)
        if points.shape != (68, 2):
            raise SgsimError(f"expected 68 landmarks shaped [68, 2], got {list(points.shape)}")
        return cls(points[IMAGE_LEFT_EYE].mean(0), points[IMAGE_RIGHT_EYE].mean(0),
                   points[MOUTH_CORNERS[0]], points[MOUTH_CORNERS[1]])


def ffhq_quad(face: FaceLandmarks) -> np.ndarray:
    """FFHQ's oriented square crop: corners [4, 2] in Pillow's QUAD order (top-left, bottom-left, bottom-right,
    top-right, as the face is upright)."""
    eye_mid = (face.eye_left + face.eye_right) / 2
    eye_to_eye = face.eye_right - face.eye_left
    eye_to_mouth = (face.mouth_left + face.mouth_right) / 2 - eye_mid
    # Across the face: the eye line averaged with the eye-to-mouth vector turned 90 degrees, so a tilt of either counts.
    across = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]
    across *= max(np.hypot(*eye_to_eye) * EYE_SCALE, np.hypot(*eye_to_mouth) * MOUTH_SCALE) / np.hypot(*across)
    down = np.flipud(across) * [-1, 1]
    centre = eye_mid + eye_to_mouth * CENTRE_SHIFT
    return np.stack([centre - across - down, centre - across + down, centre + across + down, centre + across - down])


def _pad_softly(image: Image.Image, before: np.ndarray, after: np.ndarray, blur: float) -> Image.Image:
    """Mirror-pad (x, y) pixels before and after, then blur the padding toward the photo's median colour the
    further it lies from the photo, so the mirrored copy does not read as a second face."""
    pixels = np.pad(np.asarray(image, dtype=np.float32), ((before[1], after[1]), (before[0], after[0]), (0, 0)), mode="reflect")
    height, width = pixels.shape[:2]
    ys, xs = np.ogrid[:height, :width]
    # 0 on the photo's edge, rising to 1 at the padding's outer edge, negative inside the photo.
    outside = np.maximum(1.0 - np.minimum(xs / before[0], (width - 1 - xs) / after[0]),
                         1.0 - np.minimum(ys / before[1], (height - 1 - ys) / after[1]))[..., None].astype(np.float32)
    blurred = scipy.ndimage.gaussian_filter(pixels, [blur, blur, 0])
    pixels += (blurred - pixels) * np.clip(outside * 3.0 + 1.0, 0.0, 1.0)
    pixels += (np.median(pixels, axis=(0, 1)) - pixels) * np.clip(outside, 0.0, 1.0)
    return Image.fromarray(np.uint8(np.clip(np.rint(pixels), 0, 255)), "RGB")


def align_face(image: Image.Image, face: FaceLandmarks, size: int) -> Image.Image:
    """The FFHQ crop of `face` in an RGB photo as a size x size image: shrink a large photo first, cut the crop's
    neighbourhood, pad where the crop leaves the photo, warp the quad upright and downsample."""
    quad = ffhq_quad(face)
    side = float(np.hypot(*(quad[3] - quad[0])))

    shrink = int(np.floor(side / size * 0.5))
    if shrink > 1:
        image = image.resize((int(np.rint(image.width / shrink)), int(np.rint(image.height / shrink))), Image.Resampling.LANCZOS)
        quad, side = quad / shrink, side / shrink

    border = max(int(np.rint(side * BORDER_FRACTION)), MIN_BORDER)
    low = np.maximum(np.floor(quad.min(0)).astype(int) - border, 0)
    high = np.minimum(np.ceil(quad.max(0)).astype(int) + border, image.size)
    if (low > 0).any() or (high < image.size).any():
        image = image.crop((*low, *high))
        quad = quad - low

    before = np.maximum(border - np.floor(quad.min(0)).astype(int), 0)
    after = np.maximum(np.ceil(quad.max(0)).astype(int) - np.array(image.size) + border, 0)
    if max(before.max(), after.max()) > border - 4:
        least = max(int(np.rint(side * PAD_FRACTION)), 1)
        before, after = np.maximum(before, least), np.maximum(after, least)
        image = _pad_softly(image, before, after, blur=side * BLUR_FRACTION)
        quad = quad + before

    large = size * TRANSFORM_OVERSAMPLE
    image = image.transform((large, large), Image.Transform.QUAD, (quad + 0.5).flatten().tolist(), Image.Resampling.BILINEAR)
    return image.resize((size, size), Image.Resampling.LANCZOS)


def import_faces_extra() -> tuple[ModuleType, ModuleType]:
    """dlib and face_recognition_models (the 'faces' extra), or an SgsimError with the install line: the command
    line calls it before any network loads, so a run that needs alignment fails at once without them."""
    try:
        import dlib
        import face_recognition_models
    except ImportError as exc:
        raise SgsimError(f"face alignment needs {exc.name}: {FACES_EXTRA_HINT}") from None
    return dlib, face_recognition_models


@functools.lru_cache(maxsize=1)
def _landmark_model():
    """dlib's HOG face detector and 68-point shape predictor, loaded once (the predictor file is 100 MB)."""
    dlib, face_recognition_models = import_faces_extra()
    return dlib.get_frontal_face_detector(), dlib.shape_predictor(face_recognition_models.pose_predictor_model_location())


def detect_face(image: Image.Image, source: str = "the image") -> FaceLandmarks:
    """Landmarks of the clearest face (highest detector score) in an RGB photo (dlib HOG detector + 68-point predictor, searched at most
    DETECT_MAX_SIDE px large); an SgsimError naming `source` when there is none."""
    detector, predictor = _landmark_model()
    scale = min(1.0, DETECT_MAX_SIDE / max(image.size))
    if scale < 1.0:
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.Resampling.LANCZOS)
    pixels = np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))
    boxes, scores, _ = detector.run(pixels, 1, 0.0)  # one 2x upsampling: faces down to about 40 px are found
    if len(boxes) == 0:
        raise SgsimError(f"no face found in {source}; pass --no-align to invert a centre crop instead")
    shape = predictor(pixels, boxes[int(np.argmax(scores))])
    points = np.array([(part.x, part.y) for part in shape.parts()], dtype=np.float64) / scale
    return FaceLandmarks.from_ibug68(points)


def read_face(path: str | os.PathLike, resolution: int) -> torch.Tensor:
    """Read a photo as an FFHQ-aligned crop of its clearest face: [1, 3, R, R] float32 in [-1, 1], like read_image."""
    from sgsim.images import open_rgb, to_tensor

    path = Path(path)
    image = open_rgb(path)
    face = detect_face(image, str(path))
    quad = ffhq_quad(face)
    side = float(np.hypot(*(quad[3] - quad[0])))
    if side * _MAX_UPSCALE < resolution:
        warnings.warn(f"{path}: the face crop is {side:.0f} px but the generator works at {resolution} px; upscaling it "
                      f"that far gives a blurry target, use a larger photo of the face if you have one",
                      category=SgsimNotice, stacklevel=2)
    return to_tensor(align_face(image, face, resolution))


def read_photo(path: str | os.PathLike, resolution: int, align: bool) -> torch.Tensor:
    """The inversion target of a photo: its FFHQ-aligned face crop if `align`, else its centre square."""
    if align:
        return read_face(path, resolution)
    from sgsim.images import read_image

    return read_image(path, resolution)


def alignment(generator: str | os.PathLike, align: bool | None, metadata: dict | None = None) -> tuple[bool, str]:
    """Whether a photo for `generator` is FFHQ-aligned, and why in words: `align` if given, else whether the generator
    is a face generator (sgsim.editing.presets.generator_kind: its manifest name, a file that is a cached manifest
    generator, or the training set its file's `metadata` names)."""
    if align is not None:
        return align, "aligning the face (asked for)" if align else "centre crop (asked for)"
    from sgsim.components import manifest_generator
    from sgsim.editing.presets import generator_kind

    kind = generator_kind(manifest_generator(generator) or generator, metadata)
    if kind.aligns_photos:
        return True, f"aligning the face ({kind.reason})"
    if kind.face:
        return False, f"centre crop: a generator of unaligned faces ({kind.reason})"
    return False, f"centre crop: not a face generator ({kind.reason})"


def should_align(generator: str | os.PathLike, align: bool | None, metadata: dict | None = None) -> bool:
    """`align` if given, else whether `generator` is a face generator (see alignment)."""
    return alignment(generator, align, metadata)[0]
