"""The Python API of sound-guided editing: an Editor owns its networks and edits with one call."""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

import numpy as np
import torch

from sgsim.editing.mixing import coarse_rows, mix_layers, sweep_strengths
from sgsim.editing.optimise import StepCallback, optimise_latents
from sgsim.editing.precision import check_precision, edit_precision
from sgsim.editing.presets import EditPreset, choose_preset
from sgsim.editing.sources import as_w_plus, seed_latent
from sgsim.editing.targets import Target, embed_target, loudness_scale
from sgsim.errors import SgsimError
from sgsim.inversion import invert
from stylegan2.noise import swapped_noise
from stylegan2.precision import MIXED, SynthesisPrecision

MIX_MODES = ("weighted", "layers")
IDENTITY_WEIGHTS = "arcface-ir-se50"  # manifest name of the identity network used when none is given
LPIPS_WEIGHTS = "lpips-vgg16"  # manifest name of the perceptual distance for inverting an image source
SYNTHESIS_BATCH = 8  # images rendered at once after the optimisation

Source = Union[int, str, Path, np.ndarray, torch.Tensor]


@dataclass
class EditResult:
    """Everything one edit produced; tensors live on the CPU, images in [-1, 1]."""

    images: torch.Tensor  # [T, S, 3, H, W]: per target, per strength
    latents: torch.Tensor  # [T, S, num_ws, w_dim]: the W+ latents of `images`
    edited_latents: torch.Tensor  # [T, num_ws, w_dim]: the optimised (and, for mix='layers', mixed) latents, strength 1
    source_latent: torch.Tensor  # [num_ws, w_dim]
    source_image: torch.Tensor  # [3, H, W]
    strengths: torch.Tensor  # [T, S]: strengths applied, after the loudness scale
    losses: dict[str, np.ndarray]  # "total", "clip", "latent", "id" -> [steps, len(guides)]
    guides: list[str]  # what each optimised latent aimed at (one per target, two per target for mix='layers')
    targets: list[Target]
    settings: dict  # every setting of the run, with the defaults filled in
    frames: list[torch.Tensor] = field(default_factory=list)  # [len(guides), 3, H, W] every `record_every` steps
    noise: dict[str, torch.Tensor] = field(default_factory=dict)  # noise buffers the images were made with, if not G's own


def _default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class Editor:
    """Sound-guided editing of StyleGAN2 images (SGSIM), with the defects of the reference code fixed.

    Each component is a loaded object or a checkpoints-manifest name / file path. CLIP defaults to
    the model whose space the audio encoder embeds into; the identity network is loaded only when
    an edit has lambda_id > 0. `preset` (a name in PRESETS or an EditPreset) sets the default loss
    weights; by default it follows the generator's manifest name, else DEFAULT_PRESET.
    """

    def __init__(
        self,
        generator,  # stylegan2.Generator, or a manifest name ("ffhq", "landscape", ...) or path
        audio_encoder,  # encoders.AudioEncoder, or an encoder name ("sgsim-resnet18", ...)
        clip=None,  # encoders ClipModel, or a weights name/path for the audio encoder's CLIP model
        identity=None,  # sgsim.identity IdentityLoss, or a weights name/path; None: arcface-ir-se50 if present
        device: Union[str, torch.device, None] = None,
        preset: Union[str, EditPreset, None] = None,
        audio_checkpoint: Union[str, Path, None] = None,  # weights for an encoder given by name; None: its released weights
        mixed_synthesis: SynthesisPrecision = MIXED,  # how precision='mixed' runs the generator (fp16 blocks, clamp, layout)
    ):
        self.device = torch.device(device) if device is not None else _default_device()
        self.weight_files: dict[str, Path] = {}  # component -> weights file this Editor loaded itself
        self.generator = self._load_generator(generator)
        self.audio_encoder = self._load_audio_encoder(audio_encoder, audio_checkpoint)
        self.clip = self._load_clip(clip)
        self.preset = choose_preset(preset, generator)
        self.mixed_synthesis = mixed_synthesis
        self._identity = identity  # an IdentityLoss, a weights name/path to load on first use, or None
        self._identity_missing = False
        if hasattr(identity, "net"):
            identity.net.to(self.device)

    def _resolve(self, component: str, name_or_path: Union[str, Path]) -> Path:
        from checkpoints import resolve

        path = resolve(str(name_or_path))
        self.weight_files[component] = path
        return path

    def _load_generator(self, generator):
        if not isinstance(generator, (str, Path)):
            return generator.to(self.device).eval().requires_grad_(False)
        from stylegan2 import load_generator

        return load_generator(self._resolve("generator", generator), device=self.device).eval().requires_grad_(False)

    def _load_audio_encoder(self, encoder, checkpoint):
        if not isinstance(encoder, (str, Path)):
            return encoder.to(self.device).eval().requires_grad_(False)
        from encoders import available, load_audio_encoder

        released = {info.name: info.weights for info in available()}.get(str(encoder))
        if checkpoint is not None or released is not None:
            checkpoint = self._resolve("audio_encoder", checkpoint if checkpoint is not None else released)
        return load_audio_encoder(str(encoder), checkpoint=checkpoint, device=self.device).eval().requires_grad_(False)

    def _load_clip(self, clip):
        if clip is not None and not isinstance(clip, (str, Path)):
            return clip.to(self.device).eval().requires_grad_(False)
        from encoders import load_clip

        weights = self._resolve("clip", clip if clip is not None else self.audio_encoder.clip_weights)
        model = load_clip(self.audio_encoder.clip_model, pretrained=str(weights), device=self.device)
        return model.eval().requires_grad_(False)

    def _identity_distance(self):
        """The identity loss, loaded on first use; None (after one warning) when no weights were given and the default ones are absent."""
        if self._identity is None and not self._identity_missing:
            from checkpoints.errors import MissingWeightsError

            try:
                self._identity = self._load_identity(IDENTITY_WEIGHTS)
            except MissingWeightsError as exc:
                self._identity_missing = True
                warnings.warn(f"editing without the identity loss (lambda_id 0): {exc}", stacklevel=3)
        elif isinstance(self._identity, (str, Path)):
            self._identity = self._load_identity(self._identity)
        return self._identity

    def _load_identity(self, name_or_path):
        from sgsim.identity import load_identity

        identity = load_identity(self._resolve("identity", name_or_path))
        identity.net.to(self.device)
        return identity

    def source_latent(self, source: Source, seed: int = 0, invert_steps: int = 1000, class_index: Optional[int] = None) -> torch.Tensor:
        """W+ [num_ws, w_dim] on the device for a seed (of class `class_index` for a conditional generator),
        a W / W+ latent, or an image (path or [1, 3, H, W] in [-1, 1])."""
        return self._start(source, seed, invert_steps, class_index)[0]

    def _start(self, source: Source, seed: int, invert_steps: int,
               class_index: Optional[int]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The source's W+ latent and, for an inverted image, the noise buffers the inversion fitted with it."""
        G = self.generator
        if isinstance(source, (bool, np.bool_)):
            raise SgsimError(f"source must be a seed, a latent or an image, got {source!r}")
        if isinstance(source, (int, np.integer)):
            return seed_latent(G, int(source), class_index=class_index), {}
        if class_index is not None:
            # The label only enters through the mapping network, which a latent or an image source skips.
            raise SgsimError(f"class {class_index!r} given with a latent or image source: a class picks the label of a seed "
                             f"source only; leave out class_index / --class")
        if isinstance(source, (str, Path)):
            from sgsim.images import read_image

            return self._invert(read_image(source, G.img_resolution), seed, invert_steps)
        array = torch.as_tensor(source if torch.is_tensor(source) else np.asarray(source))
        if array.dim() >= 3 and array.shape[-3] == 3 and array.shape[-1] != G.w_dim:
            return self._invert(array.reshape(-1, *array.shape[-3:]), seed, invert_steps)
        return as_w_plus(array, G.num_ws, G.w_dim).to(self.device), {}

    def _invert(self, image: torch.Tensor, seed: int, steps: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        from checkpoints.errors import MissingWeightsError
        from sgsim.lpips import read_lpips

        try:
            lpips = read_lpips(self._resolve("lpips", LPIPS_WEIGHTS))
        except MissingWeightsError:
            lpips = None  # invert warns and fits pixels instead
        result = invert(self.generator, image.to(self.device), steps=steps, lpips=lpips, seed=seed)
        return result.w_plus[0], result.noise

    @torch.no_grad()
    def render(self, latents: torch.Tensor) -> torch.Tensor:
        """Images [N, 3, H, W] in [-1, 1] on the CPU of W+ latents [N, num_ws, w_dim], a few at a time."""
        chunks = [
            self.generator.synthesis(chunk.to(self.device), noise_mode="const").cpu()
            for chunk in latents.split(SYNTHESIS_BATCH)
        ]
        return torch.cat(chunks)

    def edit(
        self,
        source: Source,
        targets: Union[Target, str, Path, Sequence[Union[Target, str, Path]]],
        steps: int = 300,
        lr: float = 0.1,
        lambda_latent: Optional[float] = None,
        lambda_id: Optional[float] = None,
        layers: Optional[Iterable[int]] = None,
        seed: int = 0,
        callback: Optional[StepCallback] = None,
        mix: str = "weighted",
        strengths: Sequence[float] = (1.0,),
        loudness_strength: bool = False,
        record_every: int = 0,
        invert_steps: int = 1000,
        noise: Optional[dict[str, torch.Tensor]] = None,
        precision: Optional[str] = None,
        class_index: Optional[int] = None,
    ) -> EditResult:
        """Edit `source` toward every target at once (one batch, same result as one by one).

        `source`: a seed, a W / W+ latent, or an image (inverted first, seeded by `seed`; the edit itself
        has no randomness, so equal arguments give identical results on the CPU).
        `targets`: Target objects (a bare path means Target(audio=path)). mix='weighted' aims at the
        normalised sum of sound and text embeddings; mix='layers' edits toward the sound and the
        text separately and takes the first half of W+ (paper: layers 1-9 of 18) from the sound.
        `strengths` rescale the edit along w_src -> w_edit without re-optimising; with
        `loudness_strength` each strength is multiplied by the sound's loudness scale.
        `noise`: noise buffers (name -> tensor) fitted with a latent source, as sgsim invert saves them;
        an image source uses those of its own inversion. `record_every` > 0 keeps snapshots in `frames`.
        `precision` of the optimisation: 'fp32'; 'mixed' (CUDA only: fp16 high-resolution generator blocks,
        CLIP under autocast); 'bf16' (generator in bfloat16 autocast, any device; fast on CPUs with AVX512-BF16 or AMX).
        None: 'mixed' on CUDA, 'fp32' elsewhere. The returned images are always rendered in fp32.
        `class_index`: the class of a seed source, required for a conditional generator (one-hot label).
        Raises EditDiverged (an SgsimError carrying the last finite latents) on a NaN loss.
        """
        targets = self._check_targets(targets, mix)
        strengths = self._check_settings(steps, lr, mix, strengths)
        precision = check_precision(precision, self.device)
        lambda_latent = self.preset.lambda_latent if lambda_latent is None else float(lambda_latent)
        lambda_id = self.preset.lambda_id if lambda_id is None else float(lambda_id)
        if not all(math.isfinite(v) and v >= 0 for v in (lambda_latent, lambda_id)):
            raise SgsimError(f"lambda_latent and lambda_id must be finite numbers >= 0, got {lambda_latent} and {lambda_id}")
        identity = self._identity_distance() if lambda_id > 0 else None
        if identity is None:
            lambda_id = 0.0

        embeddings = [embed_target(t, self.audio_encoder, self.clip) for t in targets]  # bad sounds fail before inversion
        w_source, fitted_noise = self._start(source, seed, invert_steps, class_index)
        noise = {name: torch.as_tensor(value).to(self.device) for name, value in (noise or fitted_noise).items()}
        if mix == "weighted":
            directions = torch.stack([e.mixed(t.weight) for e, t in zip(embeddings, targets)])
            guides = [t.label for t in targets]
        else:
            directions = torch.stack([e.sound for e in embeddings] + [e.text for e in embeddings])
            guides = [f"{t.label} (sound)" for t in targets] + [f"{t.text} (text)" for t in targets]

        with swapped_noise(self.generator, noise):
            with edit_precision(precision, self.generator, self.clip, synthesis=self.mixed_synthesis) as image_encoder:
                optimised = optimise_latents(
                    self.generator, image_encoder, w_source.expand(len(guides), -1, -1), directions.to(self.device),
                    steps=steps, lr=lr, lambda_latent=lambda_latent, lambda_id=lambda_id, identity=identity,
                    layers=layers, callback=callback, record_every=record_every,
                )
            edited = optimised.latents
            if mix == "layers":
                edited = mix_layers(edited[: len(targets)], edited[len(targets):])

            scales = [loudness_scale(e.loudness_dbfs) if loudness_strength else 1.0 for e in embeddings]
            applied = torch.tensor(scales)[:, None] * torch.tensor(strengths)[None, :]
            swept = sweep_strengths(w_source.cpu(), edited.cpu(), applied)
            flat = self.render(swept.flatten(0, 1))
            images = flat.reshape(*swept.shape[:2], *flat.shape[1:])
            source_image = self.render(w_source[None])[0]
        return EditResult(
            images=images,
            latents=swept,
            edited_latents=edited.cpu(),
            source_latent=w_source.cpu(),
            source_image=source_image,
            strengths=applied,
            losses=optimised.losses,
            guides=guides,
            targets=targets,
            settings={
                "steps": steps, "lr": lr, "lambda_latent": lambda_latent, "lambda_id": lambda_id,
                "layers": None if layers is None else sorted({int(i) for i in layers}), "seed": seed,
                "class_index": None if class_index is None else int(class_index),
                "mix": mix, "mix_sound_rows": coarse_rows(self.generator.num_ws) if mix == "layers" else None,
                "strengths": list(strengths), "loudness_strength": loudness_strength,
                "loudness_dbfs": [e.loudness_dbfs for e in embeddings], "loudness_scale": scales,
                "preset": asdict(self.preset), "device": str(self.device), "precision": precision,
                "mixed_synthesis": asdict(self.mixed_synthesis) if precision == "mixed" else None,
            },
            frames=optimised.frames,
            noise={name: value.cpu() for name, value in noise.items()},
        )

    @staticmethod
    def _check_targets(targets, mix: str) -> list[Target]:
        if isinstance(targets, (Target, str, Path)):
            targets = [targets]
        targets = [t if isinstance(t, Target) else Target(audio=t) for t in targets]
        if not targets:
            raise SgsimError("no targets: pass at least one Target (a sound, a text or both)")
        bad_weights = [t.weight for t in targets if not (math.isfinite(t.weight) and t.weight >= 0)]
        if bad_weights:
            raise SgsimError(f"a target's text weight must be a finite number >= 0, got {bad_weights[0]}")
        if mix == "layers" and any(t.audio is None or not t.text for t in targets):
            raise SgsimError("mix='layers' mixes a sound-guided and a text-guided edit: every target needs both audio and text")
        return targets

    @staticmethod
    def _check_settings(steps: int, lr: float, mix: str, strengths: Sequence[float]) -> list[float]:
        if mix not in MIX_MODES:
            raise SgsimError(f"unknown mix {mix!r}; choose one of {', '.join(MIX_MODES)}")
        if int(steps) != steps or steps < 1:
            raise SgsimError(f"steps must be a whole number >= 1, got {steps}")
        if not (math.isfinite(lr) and lr > 0):
            raise SgsimError(f"lr must be a finite number > 0, got {lr}")
        strengths = [float(s) for s in strengths]
        if not strengths or not all(math.isfinite(s) for s in strengths):
            raise SgsimError(f"strengths must be one or more finite numbers, got {strengths}")
        return strengths
