"""The shapes world's pictures: one shape (circle, square, triangle) in one colour (red, green, blue, yellow) on a
plain grey background, rendered on the fly and seeded; their captions; and the judge that reads a picture's colour,
shape, position and size from its pixels alone, so edits are scored by something that is not CLIP.

Every shape of a given size has the same area, so the judge tells shapes apart by compactness (area over the
area of the circle through the farthest foreground point: circle 1, square 2/pi, triangle 3*sqrt(3)/(4*pi)),
which no rotation, position or size changes; it measures it on a 4x bilinear enlargement, whose threshold follows
the antialiased outline to a quarter pixel. Backgrounds are achromatic, so the foreground is the saturated part.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch

RESOLUTION = 32
COLOURS = ("red", "green", "blue", "yellow")
SHAPES = ("circle", "square", "triangle")
COLOUR_HUES = {"red": 0.0, "green": 120.0, "blue": 240.0, "yellow": 60.0}  # HSV hue of each colour, degrees
OFF_COLOUR = -1  # Scene.colour of a picture in none of the four colours (with_off_colours)
# Half-planes of the unit polygons (outward normals at these angles, apothem 1) and the apothem that gives the
# polygon the area of a circle of radius 1: square side 2a with 4a^2 = pi; triangle 3*sqrt(3)*a^2 = pi.
POLYGON_NORMALS = {"square": (0.0, 90.0, 180.0, 270.0), "triangle": (30.0, 150.0, 270.0)}  # apex up
EQUAL_AREA_APOTHEM = {"square": math.sqrt(math.pi) / 2, "triangle": math.sqrt(math.pi / (3 * math.sqrt(3)))}
FARTHEST_POINT = {"circle": 1.0, "square": EQUAL_AREA_APOTHEM["square"] * math.sqrt(2), "triangle": EQUAL_AREA_APOTHEM["triangle"] * 2}


@dataclass(frozen=True)
class RenderRanges:
    """The ranges every random draw of the renderer comes from; the judge's tolerances follow from them."""

    radius: tuple[float, float] = (4.5, 8.5)  # radius of the circle of the shape's area, pixels
    rotation: float = 15.0  # largest rotation either way, degrees
    hue_jitter: float = 8.0  # largest hue shift either way from the colour's own, degrees
    saturation: tuple[float, float] = (0.75, 1.0)
    value: tuple[float, float] = (0.7, 1.0)
    background: tuple[float, float] = (0.08, 0.92)  # grey level of the plain background
    margin: float = 1.0  # pixels kept free between the shape's farthest point and the border

    def __post_init__(self) -> None:
        """Refuse a size range whose largest shape would not fit the picture (draw_scenes would push it over the border)."""
        low, high = self.radius
        if not 0 < low <= high:
            raise ValueError(f"radius range {low:g} to {high:g} px: expected LOW,HIGH in pixels, 0 < LOW <= HIGH")
        largest = (RESOLUTION / 2 - self.margin) / max(FARTHEST_POINT.values())
        if high > largest:
            raise ValueError(f"a triangle of radius {high:g} does not fit the {RESOLUTION} px picture; the largest that does "
                             f"is {largest:.2f}")


RANGES = RenderRanges()


@dataclass
class Scene:
    """The parameters of N pictures (one row each): what each shows and where."""

    colour: torch.Tensor  # [N] index into COLOURS
    shape: torch.Tensor  # [N] index into SHAPES
    radius: torch.Tensor  # [N] equal-area radius, pixels
    centre: torch.Tensor  # [N, 2] x, y in pixels (0 = left/top edge)
    rotation: torch.Tensor  # [N] degrees
    rgb: torch.Tensor  # [N, 3] foreground colour in [0, 1]
    background: torch.Tensor  # [N] grey level in [0, 1]

    def __len__(self) -> int:
        return len(self.colour)


def _hsv_to_rgb(hue: torch.Tensor, saturation: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """[N] hue (degrees), saturation, value -> [N, 3] RGB in [0, 1]."""
    k = (torch.tensor([5.0, 3.0, 1.0]) + hue[:, None] / 60.0) % 6
    return value[:, None] - value[:, None] * saturation[:, None] * (torch.minimum(k, 4 - k).clamp(0, 1))


def draw_scenes(count: int, seed: int, colour: torch.Tensor | None = None, shape: torch.Tensor | None = None,
                ranges: RenderRanges = RANGES) -> Scene:
    """`count` random scenes from `seed` (the same seed, the same scenes); colour and shape may be fixed per row."""
    generator = torch.Generator().manual_seed(seed)

    def uniform(low: float, high: float, *size: int) -> torch.Tensor:
        return low + (high - low) * torch.rand(count, *size, generator=generator)

    colours = torch.randint(len(COLOURS), (count,), generator=generator)
    shapes = torch.randint(len(SHAPES), (count,), generator=generator)
    colours = colours if colour is None else torch.as_tensor(colour).expand(count).clone()
    shapes = shapes if shape is None else torch.as_tensor(shape).expand(count).clone()
    radius = uniform(*ranges.radius)
    farthest = radius * torch.tensor([FARTHEST_POINT[name] for name in SHAPES])[shapes]
    slack = (RESOLUTION - 2 * (farthest + ranges.margin)).clamp_min(0)
    centre = (farthest + ranges.margin)[:, None] + slack[:, None] * torch.rand(count, 2, generator=generator)
    rotation = uniform(-ranges.rotation, ranges.rotation)
    hue = torch.tensor([COLOUR_HUES[name] for name in COLOURS])[colours] + uniform(-ranges.hue_jitter, ranges.hue_jitter)
    rgb = _hsv_to_rgb(hue % 360, uniform(*ranges.saturation), uniform(*ranges.value))
    return Scene(colours, shapes, radius, centre, rotation, rgb, uniform(*ranges.background))


def _signed_distance(scene: Scene) -> torch.Tensor:
    """[N, R, R] distance in pixels from each pixel centre to the shape's outline, negative inside."""
    coordinates = torch.arange(RESOLUTION, dtype=torch.float32) + 0.5
    x = coordinates[None, None, :] - scene.centre[:, 0, None, None]
    y = coordinates[None, :, None] - scene.centre[:, 1, None, None]
    distance = torch.sqrt(x.square() + y.square()) - scene.radius[:, None, None]  # circles
    for index, name in enumerate(SHAPES):
        rows = scene.shape == index
        if name == "circle" or not rows.any():
            continue
        # A convex polygon's distance (exact inside, within a pixel at its corners outside): the largest
        # signed distance to its edges' lines, in image coordinates where y points down.
        angles = torch.deg2rad(torch.tensor(POLYGON_NORMALS[name])[None, :] + scene.rotation[rows, None])
        apothem = scene.radius[rows] * EQUAL_AREA_APOTHEM[name]
        along = x[rows, None] * torch.cos(angles)[:, :, None, None] - y[rows, None] * torch.sin(angles)[:, :, None, None]
        distance[rows] = along.amax(dim=1) - apothem[:, None, None]
    return distance


def render(scene: Scene) -> torch.Tensor:
    """[N, 3, R, R] pictures in [-1, 1] (the generator's range), antialiased by the pixel's covered fraction."""
    coverage = (0.5 - _signed_distance(scene)).clamp(0, 1)[:, None]
    background = scene.background[:, None, None, None].expand(-1, 3, 1, 1)
    pixels = background + coverage * (scene.rgb[:, :, None, None] - background)
    return pixels * 2 - 1


def with_off_colours(scene: Scene, rows: torch.Tensor, generator: torch.Generator) -> Scene:
    """`scene` with the pictures of `rows` (bool [N]) recoloured in none of the four colours: a hue farther from every
    colour's than the judge's hue tolerance, colour index OFF_COLOUR. CLIP learns from them that "red" does not name
    magenta or orange, which renders in the four colours alone never show it."""
    margin = JudgeSettings.hue_tolerance
    hues = torch.empty(0)
    named = torch.tensor(list(COLOUR_HUES.values()))
    while len(hues) < int(rows.sum()):
        drawn = 360 * torch.rand(64, generator=generator)
        away = ((drawn[:, None] - named[None]) % 360).minimum((named[None] - drawn[:, None]) % 360).amin(dim=1)
        hues = torch.cat([hues, drawn[away > margin]])
    colour, rgb = scene.colour.clone(), scene.rgb.clone()
    colour[rows] = OFF_COLOUR
    saturation, value = rgb.amax(1) - rgb.amin(1), rgb.amax(1)  # HSV of the current colours, kept
    rgb[rows] = _hsv_to_rgb(hues[:int(rows.sum())], (saturation / value)[rows], value[rows])
    return dataclasses.replace(scene, colour=colour, rgb=rgb)


def render_random(count: int, seed: int, ranges: RenderRanges = RANGES) -> tuple[torch.Tensor, Scene]:
    """`count` seeded random pictures and the scenes they show."""
    scene = draw_scenes(count, seed, ranges=ranges)
    return render(scene), scene


# --- captions ------------------------------------------------------------------------------------------------

# What a picture may be called in CLIP's training captions; {colour} and {shape} are filled from its scene.
CAPTION_TEMPLATES = (
    "a {colour} {shape}",
    "a picture of a {colour} {shape}",
    "a {shape} in {colour}",
    "{colour} {shape}",
    "a {shape}",
    "{shape}",
    "something {colour}",
    "a {colour} shape",
    "{colour}",
)
COLOUR_PROMPT = "something {}"  # zero-shot colour prompt
SHAPE_PROMPT = "a {}"  # zero-shot shape prompt
WORDS = COLOURS + SHAPES  # the seven spoken words


def captions(scene: Scene, generator: torch.Generator) -> list[str]:
    """One caption per scene, each from a template drawn at random; every caption is true of its picture (an
    OFF_COLOUR picture's names its shape only)."""
    colourless = [template for template in CAPTION_TEMPLATES if "{colour}" not in template]
    picks = torch.randint(len(CAPTION_TEMPLATES), (len(scene),), generator=generator).tolist()
    chosen = [CAPTION_TEMPLATES[pick] if c != OFF_COLOUR else colourless[pick % len(colourless)]
              for pick, c in zip(picks, scene.colour.tolist())]
    return [template.format(colour=COLOURS[c], shape=SHAPES[s]) for template, c, s in zip(chosen, scene.colour.tolist(), scene.shape.tolist())]


def caption_truth(texts: list[str], scene: Scene) -> torch.Tensor:
    """[N, N] bool: caption j is true of picture i (every colour and shape word it has matches picture i's), so
    "something red" counts as a caption of every red picture in the batch, not of its own picture alone, and of no
    OFF_COLOUR one."""
    named_colour = torch.tensor([next((COLOURS.index(w) for w in text.split() if w in COLOURS), -1) for text in texts])
    named_shape = torch.tensor([next((SHAPES.index(w) for w in text.split() if w in SHAPES), -1) for text in texts])
    colour_true = (named_colour[None] < 0) | (named_colour[None] == scene.colour[:, None])
    shape_true = (named_shape[None] < 0) | (named_shape[None] == scene.shape[:, None])
    return colour_true & shape_true


@torch.no_grad()
def clip_reads(clip, images: torch.Tensor, batch: int = 200) -> tuple[torch.Tensor, torch.Tensor]:
    """What an sgsim ClipModel calls [N, 3, R, R] pictures zero-shot: [N] indices into COLOURS and into SHAPES (the
    prompt of each it ranks first)."""
    features = torch.cat([clip.encode_image(images[i:i + batch]) for i in range(0, len(images), batch)])
    colours = clip.encode_text([COLOUR_PROMPT.format(c) for c in COLOURS])
    shapes = clip.encode_text([SHAPE_PROMPT.format(s) for s in SHAPES])
    return (features @ colours.T).argmax(1).cpu(), (features @ shapes.T).argmax(1).cpu()


# --- the judge -----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class JudgeSettings:
    """The judge's thresholds, chosen from RenderRanges with room for a generator's imperfections."""

    saturation: float = 0.35  # a pixel is foreground when its HSV saturation is above this (backgrounds have none)
    hue_tolerance: float = 25.0  # degrees from a colour's hue within which the foreground is that colour
    hue_spread: float = 20.0  # largest circular spread of the foreground's hue, degrees, for a clear colour
    area: tuple[float, float] = (0.04, 0.45)  # foreground fraction of the picture a clean shape has
    stray: float = 0.05  # largest fraction of foreground outside the largest connected piece
    background_spread: float = 0.06  # largest std of the background's grey levels (a plain background)
    # Compactness boundaries triangle | square | circle. Ideal shapes measure 0.41, 0.64 and 1; renders, whose
    # corners are rounded by the pixel grid, measure (1st-99th percentile over 1000) 0.42-0.50, 0.63-0.73, 0.92-0.99.
    boundaries: tuple[float, float] = (0.58, 0.83)
    ambiguity: float = 0.05  # compactness this close (relatively) to a boundary leaves the shape undecided
    enlargement: int = 4  # bilinear up-sampling before thresholding, for sub-pixel outlines


@dataclass
class Judgement:
    """What the judge reads from N pictures; -1 where a colour or shape is not clear."""

    colour: np.ndarray  # [N] index into COLOURS or -1
    shape: np.ndarray  # [N] index into SHAPES or -1
    centroid: np.ndarray  # [N, 2] foreground centroid x, y as fractions of the width and height (nan when empty)
    area: np.ndarray  # [N] foreground fraction of the picture
    hue: np.ndarray  # [N] mean foreground hue, degrees
    compactness: np.ndarray  # [N] area / (pi * farthest foreground distance^2)
    clean: np.ndarray  # [N] bool: one clear shape in one clear colour on a plain background

    @property
    def colour_names(self) -> list[str]:
        return [COLOURS[i] if i >= 0 else "unclear" for i in self.colour]

    @property
    def shape_names(self) -> list[str]:
        return [SHAPES[i] if i >= 0 else "unclear" for i in self.shape]


def _hsv(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[N, 3, H, W] RGB in [0, 1] -> hue (degrees) and saturation, each [N, H, W]."""
    r, g, b = images[:, 0], images[:, 1], images[:, 2]
    high, low = images.max(axis=1), images.min(axis=1)
    chroma = high - low
    safe = np.where(chroma > 0, chroma, 1.0)
    hue = np.where(high == r, (g - b) / safe % 6, np.where(high == g, (b - r) / safe + 2, (r - g) / safe + 4)) * 60.0
    saturation = np.where(high > 0, chroma / np.where(high > 0, high, 1.0), 0.0)
    return hue, saturation


def _largest_piece_share(mask: np.ndarray) -> float:
    """Fraction of a mask's pixels in its largest 8-connected piece (1 for an empty mask)."""
    from scipy import ndimage

    labels, count = ndimage.label(mask, structure=np.ones((3, 3)))
    if count <= 1:
        return 1.0
    return float(np.bincount(labels.ravel())[1:].max() / mask.sum())


def _compactness(saturation: torch.Tensor, settings: JudgeSettings) -> np.ndarray:
    """[N] area / (pi * farthest distance^2) of the saturated part of [N, H, W] saturations, bilinearly enlarged."""
    enlarged = torch.nn.functional.interpolate(saturation[:, None], scale_factor=settings.enlargement, mode="bilinear",
                                               align_corners=False)[:, 0]
    weight = (enlarged > settings.saturation).float()
    height, width = weight.shape[-2:]
    ys = torch.arange(height, dtype=torch.float32)[:, None] + 0.5
    xs = torch.arange(width, dtype=torch.float32)[None, :] + 0.5
    count = weight.sum(dim=(1, 2))
    cx = (weight * xs).sum(dim=(1, 2)) / count.clamp_min(1)
    cy = (weight * ys).sum(dim=(1, 2)) / count.clamp_min(1)
    reach = ((xs[None] - cx[:, None, None]).square() + (ys[None] - cy[:, None, None]).square()) * weight
    farthest_squared = reach.amax(dim=(1, 2)).clamp_min(1e-12)
    return (count / (math.pi * farthest_squared)).numpy().astype(np.float64)


def judge(images: torch.Tensor | np.ndarray, settings: JudgeSettings = JudgeSettings()) -> Judgement:
    """Read colour, shape, centroid and area from [N, 3, H, W] pictures in [-1, 1] by their pixel statistics."""
    images = torch.as_tensor(images).detach().cpu().float()
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"the judge reads [N, 3, H, W] RGB pictures, got shape {tuple(images.shape)}")
    images = ((images + 1) / 2).clamp(0, 1)
    pixels = images.numpy().astype(np.float64)
    count, _, height, width = pixels.shape
    hue, saturation = _hsv(pixels)
    foreground = saturation > settings.saturation
    area = foreground.mean(axis=(1, 2))
    pixels_on = foreground.sum(axis=(1, 2))
    # Mean hue and its spread, on the circle.
    angle = np.deg2rad(hue)
    weight = np.where(foreground, 1.0, 0.0)
    mean_cos = (np.cos(angle) * weight).sum(axis=(1, 2)) / np.maximum(pixels_on, 1)
    mean_sin = (np.sin(angle) * weight).sum(axis=(1, 2)) / np.maximum(pixels_on, 1)
    mean_hue = np.rad2deg(np.arctan2(mean_sin, mean_cos)) % 360
    resultant = np.clip(np.hypot(mean_cos, mean_sin), 1e-12, 1.0)
    spread = np.rad2deg(np.sqrt(-2 * np.log(resultant)))  # circular standard deviation
    centres = np.array([COLOUR_HUES[name] for name in COLOURS])
    distance = np.abs((mean_hue[:, None] - centres[None, :] + 180) % 360 - 180)
    colour = np.where((distance.min(axis=1) <= settings.hue_tolerance) & (spread <= settings.hue_spread) & (pixels_on > 0),
                      distance.argmin(axis=1), -1)
    compactness = _compactness(torch.from_numpy(saturation).float(), settings)
    low, high = settings.boundaries
    shape = np.select([compactness < low, compactness < high], [SHAPES.index("triangle"), SHAPES.index("square")],
                      SHAPES.index("circle"))
    near = np.minimum(np.abs(np.log(compactness.clip(1e-6) / low)), np.abs(np.log(compactness.clip(1e-6) / high)))
    shape = np.where((near < settings.ambiguity) | (pixels_on == 0), -1, shape)
    grey = np.where(~foreground, pixels.mean(axis=1), np.nan).reshape(count, -1)
    background_spread = np.array([np.nanstd(row) if np.isfinite(row).any() else np.inf for row in grey])
    connected = np.array([_largest_piece_share(mask) for mask in foreground])
    clean = ((colour >= 0) & (shape >= 0) & (area >= settings.area[0]) & (area <= settings.area[1])
             & (1 - connected <= settings.stray) & (background_spread <= settings.background_spread))
    ys, xs = np.mgrid[0:height, 0:width] + 0.5
    cx = (xs * weight).sum(axis=(1, 2)) / np.maximum(pixels_on, 1) / width
    cy = (ys * weight).sum(axis=(1, 2)) / np.maximum(pixels_on, 1) / height
    centroid = np.where(pixels_on[:, None] > 0, np.stack([cx, cy], axis=1), np.nan)
    return Judgement(colour, shape, centroid, area, mean_hue, compactness, clean)
