"""The Python API of sound-guided editing: an Editor owns its networks and edits with one call."""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Optional, Sequence, Union

import numpy as np
import torch

from sgsim import components
from sgsim.editing.mixing import coarse_rows, mix_layers, sweep_strengths
from sgsim.editing.optimise import StepCallback, optimise_latents
from sgsim.editing.precision import check_precision, edit_precision
from sgsim.editing.presets import EditPreset, PresetChoice, preset_choice
from sgsim.editing.sources import ImageSource, LatentSource, SeedSource, as_source, as_w_plus, seed_latent
from sgsim.editing.targets import Target, embed_target, loudness_scale
from sgsim.errors import SgsimError
from sgsim.inversion import invert
from sgsim.losses import TERMS, check_weights
from stylegan2.noise import swapped_noise
from stylegan2.precision import MIXED, SynthesisPrecision

MIX_MODES = ("weighted", "layers")
SYNTHESIS_BATCH = 8  # images rendered at once after the optimisation
# Helper networks loaded on first use when none was given: name (as loss terms' `needs` say it) -> loader.
DEFAULT_NETWORKS = {"identity": components.load_identity, "lpips": components.load_lpips}

AnySource = Union[SeedSource, LatentSource, ImageSource, int, str, Path, np.ndarray, torch.Tensor]


@dataclass
class EditResult:
    """Everything one edit produced; tensors live on the CPU, images in [-1, 1]."""

    images: torch.Tensor  # [T, S, 3, H, W]: per target, per strength
    latents: torch.Tensor  # [T, S, num_ws, w_dim]: the W+ latents of `images`
    edited_latents: torch.Tensor  # [T, num_ws, w_dim]: the optimised (and, for mix='layers', mixed) latents, strength 1
    source_latent: torch.Tensor  # [num_ws, w_dim]
    source_image: torch.Tensor  # [3, H, W]
    strengths: torch.Tensor  # [T, S]: strengths applied, after the loudness scale
    losses: dict[str, np.ndarray]  # "total" and every loss term ("clip", "latent", "id", ...) -> [steps, len(guides)]
    guides: list[str]  # what each optimised latent aimed at (one per target, two per target for mix='layers')
    targets: list[Target]
    settings: dict  # every setting of the run, with the defaults filled in
    frames: list[torch.Tensor] = field(default_factory=list)  # [len(guides), 3, H, W] every `record_every` steps
    noise: dict[str, torch.Tensor] = field(default_factory=dict)  # noise buffers the images were made with, if not G's own


def _default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class Editor:
    """Sound-guided editing of StyleGAN2 images (SGSIM), with the defects of the reference code fixed.

    Takes loaded components (Editor.from_pretrained loads them by name or path). The identity network and
    LPIPS, when not given, are loaded from the cache on first use (an edit with an identity weight > 0, an
    image source). `preset` (a name in PRESETS, an EditPreset or a PresetChoice) sets the default loss
    weights; by default it follows the training set the generator's file names (G.metadata), else DEFAULT_PRESET.
    """

    def __init__(
        self,
        generator,  # stylegan2.Generator
        audio_encoder,  # encoders.AudioEncoder
        clip,  # encoders ClipModel of the space the audio encoder embeds into
        identity=None,  # sgsim.identity.IdentityLoss; None: arcface-ir-se50 from the cache when an edit needs it
        lpips=None,  # sgsim.lpips.LpipsDistance for inverting image sources; None: lpips-vgg16 from the cache
        device: Union[str, torch.device, None] = None,
        preset: Union[str, EditPreset, PresetChoice, None] = None,
        mixed_synthesis: SynthesisPrecision = MIXED,  # how precision='mixed' runs the generator (fp16 blocks, clamp, layout)
        weight_files: Optional[Mapping[str, Path]] = None,  # component -> weights file it was read from (run.json)
    ):
        named = [name for name, value in (("generator", generator), ("audio_encoder", audio_encoder), ("clip", clip))
                 if isinstance(value, (str, Path)) or value is None]
        if named:
            raise SgsimError(f"Editor takes loaded networks, got a name or nothing for {', '.join(named)}; "
                             f"load them by name with Editor.from_pretrained(generator, encoder, ...)")
        self.device = torch.device(device) if device is not None else _default_device()
        self.generator = generator.to(self.device).eval().requires_grad_(False)
        self.audio_encoder = audio_encoder.to(self.device).eval().requires_grad_(False)
        self.clip = clip.to(self.device).eval().requires_grad_(False)
        choice = preset_choice(preset, None, getattr(generator, "metadata", None))
        self.preset_choice = choice  # which preset, and why (the CLI prints choice.reason; a notice when not recognised)
        self.preset, self.preset_name, self.preset_reason = choice.preset, choice.name, choice.reason
        self.mixed_synthesis = mixed_synthesis
        self.weight_files: dict[str, Path] = dict(weight_files or {})  # component -> weights file
        self.networks: dict[str, object] = {"identity": identity, "lpips": lpips}  # helper networks by name
        for network in self.networks.values():
            if network is not None:
                network.to(self.device)
        self._missing: dict[str, str] = {}  # default networks absent from the cache -> why (each warned about once)
        self._warned: set[str] = set()

    @classmethod
    def from_pretrained(
        cls,
        generator: Union[str, Path] = "ffhq",  # manifest name ("ffhq", "landscape", ...) or checkpoint path
        encoder: str = "sgsim-resnet18",  # registered audio encoder name
        encoder_checkpoint: Union[str, Path, None] = None,  # its weights (name or path); None: its released weights
        clip: Union[str, Path, None] = None,  # weights of the encoder's CLIP model; None: those it was aligned with
        identity: Union[str, Path, None] = None,  # identity weights; None: arcface-ir-se50 when an edit needs it
        device: Union[str, torch.device, None] = None,
        preset: Union[str, EditPreset, None] = None,  # None: recognised from what the generator is
        **options,  # further Editor arguments (mixed_synthesis)
    ) -> "Editor":
        """An Editor with every component loaded by manifest name or file path (sgsim.components)."""
        device = torch.device(device) if device is not None else _default_device()
        G = components.load_generator(generator, device)
        encoder_loaded = components.load_audio_encoder(encoder, encoder_checkpoint, device)
        clip_loaded = components.load_clip_for(encoder_loaded.component, clip, device)
        loaded = {"generator": G, "audio_encoder": encoder_loaded, "clip": clip_loaded}
        if identity is not None:
            loaded["identity"] = components.load_identity(identity, device)
        known = components.manifest_generator(generator) if preset is None else None  # may hash the file: only when needed
        choice = preset_choice(preset, known or generator, G.component.metadata)
        return cls(
            G.component, encoder_loaded.component, clip_loaded.component,
            identity=loaded["identity"].component if "identity" in loaded else None, device=device, preset=choice,
            weight_files={name: item.weights for name, item in loaded.items() if item.weights is not None}, **options,
        )

    def _network(self, name: str):
        """The helper network `name`, loading the default weights on first use; None when they are not in the cache."""
        if self.networks.get(name) is None and name not in self._missing:
            from checkpoints.errors import MissingWeightsError

            if name not in DEFAULT_NETWORKS:
                self._missing[name] = f"no {name} network was given to the Editor"
                return None
            try:
                loaded = DEFAULT_NETWORKS[name](device=self.device)
            except MissingWeightsError as exc:
                self._missing[name] = str(exc)
                return None
            self.networks[name] = loaded.component
            self.weight_files[name] = loaded.weights
        return self.networks.get(name)

    def source_latent(self, source: AnySource, seed: int = 0, invert_steps: int = 1000, class_index: Optional[int] = None) -> torch.Tensor:
        """W+ [num_ws, w_dim] on the device of a source: a seed (of class `class_index` for a conditional
        generator), a W / W+ latent, or an image (inverted, seeded by `seed`); see sources.as_source."""
        return self._start(source, seed, invert_steps, class_index)[0]

    def _start(self, source: AnySource, seed: int, invert_steps: int,
               class_index: Optional[int]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The source's W+ latent and the noise buffers to render it with ({}: the generator's own)."""
        G = self.generator
        source = as_source(source)
        if isinstance(source, SeedSource):
            if class_index is not None and source.class_index is not None and class_index != source.class_index:
                raise SgsimError(f"two classes given: class_index={class_index!r} and SeedSource.class_index={source.class_index!r}")
            return seed_latent(G, source.seed, class_index=source.class_index if class_index is None else class_index), {}
        if class_index is not None:
            # The label only enters through the mapping network, which a latent or an image source skips.
            raise SgsimError(f"class {class_index!r} given with a latent or image source: a class picks the label of a seed "
                             f"source only; leave out class_index / --class")
        if isinstance(source, LatentSource):
            return as_w_plus(source.latent, G.num_ws, G.w_dim).to(self.device), dict(source.noise)
        image = source.image
        if isinstance(image, (str, Path)):
            from sgsim.images import read_image

            image = read_image(image, G.img_resolution)
        lpips = self._network("lpips")  # None: invert warns and fits pixels instead
        result = invert(G, image.reshape(-1, *image.shape[-3:]).to(self.device), steps=invert_steps, lpips=lpips, seed=seed)
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
        source: AnySource,
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
        weights: Optional[Mapping[str, float]] = None,
    ) -> EditResult:
        """Edit `source` toward every target at once (one batch, same result as one by one).

        `source`: SeedSource, LatentSource or ImageSource, or the shorthands a seed (int), an image path, a W / W+
        latent (array or tensor). An image is inverted first, seeded by `seed`; the edit itself has no randomness,
        so equal arguments give identical results on the CPU.
        `targets`: Target objects (a bare path means Target(audio=path)). mix='weighted' aims at the
        normalised sum of sound and text embeddings; mix='layers' edits toward the sound and the
        text separately and takes the first half of W+ (paper: layers 1-9 of 18) from the sound.
        `weights`: loss term name (sgsim.losses.TERMS: "clip", "latent", "id", ...) -> weight, over the preset's;
        `lambda_latent` and `lambda_id` are the same as weights={"latent": ..., "id": ...}. Weight 0 turns a term off.
        `strengths` rescale the edit along w_src -> w_edit without re-optimising; with
        `loudness_strength` each strength is multiplied by the sound's loudness scale.
        `noise`: noise buffers (name -> tensor) fitted with a latent source, as sgsim invert saves them
        (LatentSource.noise says the same); an image source uses those of its own inversion.
        `record_every` > 0 keeps snapshots in `frames`.
        `precision` of the optimisation: 'fp32'; 'mixed' (CUDA only: fp16 high-resolution generator blocks,
        CLIP under autocast); 'bf16' (generator in bfloat16 autocast, any device; fast on CPUs with AVX512-BF16 or AMX).
        None: 'mixed' on CUDA, 'fp32' elsewhere. The returned images are always rendered in fp32.
        `class_index`: the class of a seed source, required for a conditional generator (one-hot label).
        Raises EditDiverged (an SgsimError carrying the last finite latents) on a NaN loss.
        """
        targets = self._check_targets(targets, mix)
        strengths = self._check_settings(steps, lr, mix, strengths)
        precision = check_precision(precision, self.device)
        weights = self._weights(weights, lambda_latent, lambda_id)
        networks = self._networks_for(weights)

        source = as_source(source)
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
                    steps=steps, lr=lr, weights=weights, networks=networks,
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
                "steps": steps, "lr": lr, "weights": weights,
                "lambda_latent": weights["latent"], "lambda_id": weights["id"],
                "layers": None if layers is None else sorted({int(i) for i in layers}), "seed": seed,
                "class_index": None if class_index is None else int(class_index),
                "source_type": type(source).__name__,
                "mix": mix, "mix_sound_rows": coarse_rows(self.generator.num_ws) if mix == "layers" else None,
                "strengths": list(strengths), "loudness_strength": loudness_strength,
                "loudness_dbfs": [e.loudness_dbfs for e in embeddings], "loudness_scale": scales,
                "preset": asdict(self.preset), "preset_name": self.preset_name, "preset_reason": self.preset_reason,
                "device": str(self.device), "precision": precision,
                "mixed_synthesis": asdict(self.mixed_synthesis) if precision == "mixed" else None,
            },
            frames=optimised.frames,
            noise={name: value.cpu() for name, value in noise.items()},
        )

    def _weights(self, weights: Optional[Mapping[str, float]], lambda_latent: Optional[float],
                 lambda_id: Optional[float]) -> dict[str, float]:
        """The preset's loss weights updated by `weights` and the lambda_* aliases, checked."""
        aliases = {name: value for name, value in (("latent", lambda_latent), ("id", lambda_id)) if value is not None}
        if not all(math.isfinite(v) and v >= 0 for v in aliases.values()):
            raise SgsimError(f"lambda_latent and lambda_id must be finite numbers >= 0, got {lambda_latent} and {lambda_id}")
        return check_weights({**self.preset.weights, **(weights or {}), **aliases})

    def _networks_for(self, weights: dict[str, float]) -> dict[str, object]:
        """The helper networks the terms with weight > 0 need; a term whose network is absent from the cache is
        turned off (weight set to 0 in `weights`), with one warning per network."""
        networks = {}
        for name, weight in weights.items():
            needs = TERMS[name].needs if weight > 0 else ()
            absent = [need for need in needs if self._network(need) is None]
            if absent:
                weights[name] = 0.0
                if absent[0] not in self._warned:
                    self._warned.add(absent[0])
                    warnings.warn(f"editing without the {absent[0]} loss ({name} weight 0): {self._missing[absent[0]]}", stacklevel=3)
                continue
            networks.update({need: self.networks[need] for need in needs})
        return networks

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
