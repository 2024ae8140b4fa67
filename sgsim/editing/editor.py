"""The Python API of sound-guided editing: an Editor owns its networks and edits with one call."""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Optional, Sequence, Union

import numpy as np
import torch

from sgsim import components
from sgsim.devices import PrecisionChoice, choose_precision
from sgsim.checksums import state_sha256
from sgsim.editing.directions import (SoundDirection, architecture, check_generator, combined_offset, direction_names,
                                      strength_latents)
from sgsim.editing.modes import holding_generator
from sgsim.editing.mixing import coarse_rows, mix_layers, sweep_strengths
from sgsim.editing.optimise import OptimisedLatents, StepCallback, choose_work_resolution, optimise_latents
from sgsim.editing.precision import edit_precision
from sgsim.editing.results import AppliedEdit, EditResult
from sgsim.editing.presets import EditPreset, PresetChoice, preset_choice
from sgsim.editing.stopping import steps_and_rule
from sgsim.editing.sources import (ImageSource, LatentSource, MeanSource, SeedSource, as_source, as_w_plus, mean_latent,
                                   seed_latent)
from sgsim.editing.targets import Target, embed_target, loudness_scale, loudness_strengths
from sgsim.editing.variables import SharedOffset, free_rows
from sgsim.errors import SgsimError, SgsimNotice
from sgsim.settings import SEED_TRUNCATION, EditSettings, check_settings, check_strengths
from sgsim.losses import TERMS, ClipDirection, IdentityTerm, check_weights
from sgsim.progress import phase_bar
from stylegan2.noise import swapped_noise
from stylegan2.precision import MIXED, SynthesisPrecision

SYNTHESIS_BATCH = 8  # images rendered at once after the optimisation
# Helper networks loaded on first use when none was given: name (as loss terms' `needs` say it) -> loader.
DEFAULT_NETWORKS = {"identity": components.load_identity, "lpips": components.load_lpips}

if TYPE_CHECKING:
    from sgsim.editing.video import VideoEdit

AnySource = Union[SeedSource, LatentSource, ImageSource, MeanSource, int, str, Path, np.ndarray, torch.Tensor]


@dataclass
class PreparedRun:
    """What an optimisation settled before it starts (Editor.prepare_run)."""

    precision: PrecisionChoice  # name and reason
    weights: dict[str, float]  # every loss term's weight, the preset's updated by the call's
    networks: dict[str, object]  # the helper networks the terms with weight > 0 need


def _describe_source(source) -> dict:
    """A source as a direction's settings record it: the seed, the image file, or that it was a latent."""
    if isinstance(source, SeedSource):
        return {"seed": source.seed, "class_index": source.class_index}
    if isinstance(source, ImageSource):
        return {"image": str(source.image) if isinstance(source.image, (str, Path)) else "tensor"}
    if isinstance(source, MeanSource):
        return {"mean": True}
    return {"latent": list(np.shape(source.latent))}


def _with_photo_settings(source, settings: EditSettings):
    """An image source with the settings' photo choices (method, encoder, alignment) where it leaves them open."""
    return source.with_settings(settings) if isinstance(source, ImageSource) else source


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
        encoder_name: Optional[str] = None,  # the audio encoder's registered name (run.json), when loaded by name
        world: Optional[str] = None,  # the miniature world the networks are (run.json: evaluate judges its edits)
    ):
        named = [name for name, value in (("generator", generator), ("audio_encoder", audio_encoder), ("clip", clip))
                 if isinstance(value, (str, Path)) or (value is None and name == "generator")]
        if named:
            raise SgsimError(f"Editor takes loaded networks, got a name or nothing for {', '.join(named)}; "
                             f"load them by name with Editor.from_pretrained(generator, encoder, ...)")
        if (audio_encoder is None) != (clip is None):
            raise SgsimError("give the Editor both the audio encoder and its CLIP model, or neither (an Editor that only applies directions)")
        self.device = torch.device(device) if device is not None else _default_device()
        self.generator = generator.to(self.device).eval().requires_grad_(False)
        self.audio_encoder = audio_encoder.to(self.device).eval().requires_grad_(False) if audio_encoder is not None else None
        self.clip = clip.to(self.device).eval().requires_grad_(False) if clip is not None else None
        choice = preset_choice(preset, None, getattr(generator, "metadata", None))
        self.preset_choice = choice  # which preset, and why (the CLI prints choice.reason; a notice when not recognised)
        self.preset, self.preset_name, self.preset_reason = choice.preset, choice.name, choice.reason
        self.mixed_synthesis = mixed_synthesis
        self.weight_files: dict[str, Path] = dict(weight_files or {})  # component -> weights file
        self.encoder_name, self.world = encoder_name, world
        self.networks: dict[str, object] = {"identity": identity, "lpips": lpips}  # helper networks by name
        for network in self.networks.values():
            if network is not None:
                network.to(self.device)
        self.inversions: list[dict] = []  # each photo inverted: its plan, why, and the reconstruction's distances
        self._missing: dict[str, str] = {}  # default networks absent from the cache -> why (each warned about once)
        self._warned: set[str] = set()
        self._checksums: dict[str, str] = {}  # component -> state_sha256, computed on first need (the networks are frozen)

    @classmethod
    def from_pretrained(
        cls,
        generator: Union[str, Path] = "ffhq",  # manifest name ("ffhq", "landscape", ...) or checkpoint path
        encoder: Optional[str] = "sgsim-resnet18",  # registered audio encoder name; None: an Editor that only applies directions
        encoder_checkpoint: Union[str, Path, None] = None,  # its weights (name or path); None: its released weights
        clip: Union[str, Path, None] = None,  # weights of the encoder's CLIP model; None: those it was aligned with
        identity: Union[str, Path, None] = None,  # identity weights; None: arcface-ir-se50 when an edit needs it
        device: Union[str, torch.device, None] = None,
        preset: Union[str, EditPreset, None] = None,  # None: recognised from what the generator is
        check_generator: Optional[Callable[[Any], None]] = None,  # called on the generator before the other networks load
        world: Optional[str] = None,  # a built miniature world ("shapes"): its generator, encoder and CLIP files
        **options,  # further Editor arguments (mixed_synthesis)
    ) -> "Editor":
        """An Editor with every component loaded by manifest name or file path (sgsim.components), or from `world`'s
        files (sgsim.worlds.world_networks; naming a network as well is an error). `check_generator` lets a caller
        refuse what the generator cannot do (a class it lacks) before the encoders and CLIP load."""
        if world is not None:
            from sgsim.worlds import world_networks

            chosen = world_networks(EditSettings(world=world, generator=generator, encoder=encoder or EditSettings.encoder,
                                                 encoder_checkpoint=encoder_checkpoint, clip_weights=clip))
            generator, encoder_checkpoint, clip = chosen.generator, chosen.encoder_checkpoint, chosen.clip_weights
            encoder = chosen.encoder if encoder is not None else None
        device = torch.device(device) if device is not None else _default_device()
        G = components.load_generator(generator, device)
        if check_generator is not None:
            check_generator(G.component)
        loaded = {"generator": G}
        if encoder is not None:
            loaded["audio_encoder"] = components.load_audio_encoder(encoder, encoder_checkpoint, device)
            loaded["clip"] = components.load_clip_for(loaded["audio_encoder"].component, clip, device)
        if identity is not None:
            loaded["identity"] = components.load_identity(identity, device)
        known = components.manifest_generator(generator) if preset is None else None  # may hash the file: only when needed
        choice = preset_choice(preset, known or generator, G.component.metadata)
        return cls(
            G.component, *(loaded[name].component if name in loaded else None for name in ("audio_encoder", "clip")),
            identity=loaded["identity"].component if "identity" in loaded else None, device=device, preset=choice,
            weight_files={name: item.weights for name, item in loaded.items() if item.weights is not None},
            encoder_name=encoder, world=world, **options,
        )

    def recorded_networks(self) -> dict:
        """What a saved edit's run.json says of the networks, so `sgsim evaluate` can load them again: the audio
        encoder's registered name, the weights files read (component -> path; write_edit_folder adds their sha256
        when it writes the record) and the world they are, if one; {} for an Editor given networks alone."""
        if self.encoder_name is None:
            return {}
        world = {"world": self.world} if self.world is not None else {}
        return {"encoder": self.encoder_name, "weights": dict(self.weight_files), **world}

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

    def source_latent(self, source: AnySource, seed: int = 0, invert_steps: int = 1000, class_index: Optional[int] = None,
                      truncation: float = SEED_TRUNCATION) -> torch.Tensor:
        """W+ [num_ws, w_dim] on the device of a source: a seed (of class `class_index` for a conditional
        generator, truncated by `truncation`), a W / W+ latent, an image (inverted, seeded by `seed`) or the mean
        latent; see sources.as_source."""
        return self.source_start(source, seed, invert_steps, class_index, truncation=truncation)[0]

    @holding_generator
    def source_start(self, source: AnySource, seed: int, invert_steps: int, class_index: Optional[int],
                     refine_steps: int = 0, truncation: float = SEED_TRUNCATION,
                     ) -> tuple[torch.Tensor, dict[str, torch.Tensor], Optional[torch.Tensor]]:
        """The source's W+ latent, the noise buffers to render it with ({}: the generator's own) and, for an image
        source, the photo as inverted ([3, H, W] in [-1, 1]); each photo's inversion (plan, reason, distances) is
        recorded in `inversions`."""
        G = self.generator
        source = as_source(source)
        if isinstance(source, SeedSource):
            if class_index is not None and source.class_index is not None and class_index != source.class_index:
                raise SgsimError(f"two classes given: class_index={class_index!r} and SeedSource.class_index={source.class_index!r}")
            return seed_latent(G, source.seed, truncation, source.class_index if class_index is None else class_index), {}, None
        if class_index is not None:
            # The label only enters through the mapping network, which a latent, image or mean source skips.
            raise SgsimError(f"class {class_index!r} given with a latent, image or mean source: a class picks the label of a seed "
                             f"source only; leave out class_index / --class")
        if isinstance(source, LatentSource):
            return as_w_plus(source.latent, G.num_ws, G.w_dim).to(self.device), dict(source.noise), None
        if isinstance(source, MeanSource):
            return mean_latent(G).to(self.device), {}, None
        # The photo policy (sgsim.photo_inversion) decides alignment, method and steps; with 'optimise' the W fit
        # alone unless `refine_steps` is given, as Editor.edit has always inverted.
        from sgsim.photo_inversion import invert_photo, inversion_record

        plan = source.plan(self.weight_files.get("generator", ""), invert_steps, refine_steps, getattr(G, "metadata", None))
        identity = self._network("identity") if plan.align else None
        photo, inversion = invert_photo(G, source.image, plan, lpips=self._network("lpips"), identity=identity, seed=seed)
        self.inversions.append(inversion_record(source.image, inversion, seed))
        if plan.encoder is not None:
            self.weight_files.setdefault("photo_encoder", Path(plan.encoder))
        result = inversion.result
        return result.w_plus[0], result.noise, photo[0].detach().float().cpu().clamp(-1, 1)

    @holding_generator
    @torch.no_grad()
    def render(self, latents: torch.Tensor, transforms: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Images [N, 3, H, W] on the CPU of W+ latents [N, num_ws, w_dim], a few at a time, clamped to [-1, 1]: the
        generator overshoots it a little, and what a PNG shows (and an EditResult documents) is the clamped image.
        `transforms` [N, 3, 3]: a StyleGAN3 generator's input transform per image (sgsim.camera)."""
        extra = [{}] * len(latents) if transforms is None else [{"transforms": t} for t in transforms.split(SYNTHESIS_BATCH)]
        chunks = [
            self.generator.synthesis(chunk.to(self.device), noise_mode="const", **kwargs).clamp(-1, 1).cpu()
            for chunk, kwargs in zip(latents.split(SYNTHESIS_BATCH), extra)
        ]
        return torch.cat(chunks)

    @holding_generator
    def edit(
        self,
        source: AnySource,
        targets: Union[Target, str, Path, Sequence[Union[Target, str, Path]]],
        settings: Optional[EditSettings] = None,  # every edit setting (sgsim.settings.EditSettings); None: the defaults
        *,
        layers: Optional[Iterable[int]] = None,  # W+ rows the edit may move; None: all
        seed: int = 0,  # seeds an image source's inversion
        callback: Optional[StepCallback] = None,  # callback(step, losses, **values): after every step
        callback_values: Sequence[str] = (),  # what `callback` also receives by name: "latents", "images" (STEP_VALUES)
        record_every: int = 0,  # > 0: keep a snapshot every that many steps in `frames`
        noise: Optional[dict[str, torch.Tensor]] = None,
        class_index: Optional[int] = None,
        **changes,  # EditSettings fields over `settings`: steps, lr, weights, lambda_latent, lambda_id, mix, strengths, ...
    ) -> EditResult:
        """Edit `source` toward every target at once (one batch, same result as one by one).

        `source`: SeedSource, LatentSource or ImageSource, or the shorthands a seed (int), an image path, a W / W+
        latent (array or tensor). An image is inverted first as the photo policy decides (ImageSource.plan: the settings' inversion_method,
        photo_encoder, align, invert_steps, refine_steps), seeded by `seed`; the edit
        itself has no randomness, so equal arguments give identical results on the CPU.
        `targets`: Target objects (a bare path means Target(audio=path)). mix='weighted' aims at the
        normalised sum of sound and text embeddings; mix='layers' edits toward the sound and the
        text separately and takes the first half of W+ (paper: layers 1-9 of 18) from the sound.
        `weights`: loss term name (sgsim.losses.TERMS: "clip", "latent", "id", ...) -> weight, over the preset's;
        `lambda_latent` and `lambda_id` are the same as weights={"latent": ..., "id": ...}. Weight 0 turns a term off.
        `strengths` rescale the edit along w_src -> w_edit without re-optimising; with
        `loudness_strength` each strength is multiplied by the sound's loudness scale.
        `noise`: noise buffers (name -> tensor) fitted with a latent source, as sgsim invert saves them
        (LatentSource.noise says the same); an image source uses those of its own inversion.
        `precision` of the optimisation: 'fp32'; 'mixed' (CUDA only: fp16 high-resolution generator blocks,
        CLIP under autocast); 'bf16' (generator in bfloat16, CLIP and the loss networks under bfloat16 autocast,
        any device; fast on CPUs with AVX512-BF16 or AMX).
        None: 'mixed' on CUDA, 'bf16' on a CPU with native bfloat16 (AVX512-BF16 or AMX), 'fp32' elsewhere; the
        choice and its reason are recorded in `settings`. The returned images are always rendered in fp32.
        The settings naming networks (generator, encoder, ...) are the Editor's own and not read here.
        `class_index`: the class of a seed source, required for a conditional generator (one-hot label).
        `work_resolution` (a setting): optimise at the running image of this block (optimise.choose_work_resolution;
        "auto": full size until 256 px on a CPU is measured to keep quality; "full"; or pixels); the rows only higher
        blocks read stay at the source, the returned images are full size, the recorded losses and frames at the
        working resolution (settings record what was asked, used and why).
        Raises EditDiverged (an SgsimError carrying the last finite latents) on a NaN loss.
        """
        settings = (settings if settings is not None else EditSettings()).updated(**changes)
        steps, lr, mix, loudness_strength = settings.steps, settings.lr, settings.mix, settings.loudness_strength
        self.require_encoders("edit")
        targets = self._check_targets(targets, mix)
        strengths = check_settings(steps, lr, mix, settings.strengths)
        source = as_source(source)
        free = isinstance(source, MeanSource)
        if settings.free and not free:
            raise SgsimError(f"free=True starts from the generator's mean latent: pass MeanSource() as the source, not a "
                             f"{type(source).__name__}")
        run = self.prepare_run(settings.precision, settings.loss_weights, settings.lambda_latent, settings.lambda_id,
                               free=free, adaptive_layer_masking=settings.adaptive_layer_masking)
        weights = run.weights
        working = choose_work_resolution(settings.work_resolution, self.generator, self.device)

        source = _with_photo_settings(as_source(source), settings)
        embeddings = [embed_target(t, self.audio_encoder, self.clip) for t in targets]  # bad sounds fail before inversion
        w_source, fitted_noise, input_image = self.source_start(source, seed, settings.invert_steps, class_index,
                                                                settings.refine_steps, settings.truncation)
        noise = {name: torch.as_tensor(value).to(self.device) for name, value in (noise or fitted_noise).items()}
        if mix == "weighted":
            directions = torch.stack([e.mixed(t.weight) for e, t in zip(embeddings, targets)])
            guides = [t.label for t in targets]
        else:
            directions = torch.stack([e.sound for e in embeddings] + [e.text for e in embeddings])
            guides = [f"{t.label} (sound)" for t in targets] + [f"{t.text} (text)" for t in targets]

        cap, rule = steps_and_rule(steps)
        optimised = self.optimise(run, w_source.expand(len(guides), -1, -1), directions, noise=noise, steps=cap, lr=lr,
                                  layers=layers, callback=callback, callback_values=callback_values, record_every=record_every,
                                  work_resolution=working.used, stop=rule)
        edited = optimised.latents
        if mix == "layers":
            edited = mix_layers(edited[: len(targets)], edited[len(targets):])
        levels = [e.loudness_dbfs for e in embeddings]
        applied = loudness_strengths(levels, strengths, loudness_strength).float()
        scales = [loudness_scale(level) if loudness_strength else 1.0 for level in levels]
        swept = sweep_strengths(w_source.cpu(), edited.cpu(), applied)
        with swapped_noise(self.generator, noise):
            flat = self.render(swept.flatten(0, 1))
            images = flat.reshape(*swept.shape[:2], *flat.shape[1:])
            source_image = self.render(w_source[None])[0]
        return EditResult(
            networks=self.recorded_networks(),
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
                "steps": steps, "steps_used": optimised.steps_used, "steps_reason": optimised.stopped,
                "lr": lr, "weights": weights, "lambda_latent": weights["latent"], "lambda_id": weights["id"],
                "layers": None if layers is None else sorted({int(i) for i in layers}), "seed": seed,
                "class_index": None if class_index is None else int(class_index),
                "source_type": type(source).__name__, "free": free,
                "truncation": settings.truncation if isinstance(source, SeedSource) else None,
                "adaptive_layer_masking": settings.adaptive_layer_masking,
                "mix": mix, "mix_sound_rows": coarse_rows(self.generator.num_ws) if mix == "layers" else None,
                "strengths": list(strengths), "loudness_strength": loudness_strength, "record_every": record_every,
                "loudness_dbfs": [e.loudness_dbfs for e in embeddings], "loudness_scale": scales,
                "preset": asdict(self.preset), "preset_name": self.preset_name, "preset_reason": self.preset_reason,
                "device": str(self.device), "precision": run.precision.name, "precision_reason": run.precision.reason,
                "mixed_synthesis": asdict(self.mixed_synthesis) if run.precision.name == "mixed" else None,
                "work_resolution": asdict(working),
            },
            frames=[frame.clamp(-1, 1) for frame in optimised.frames],
            noise={name: value.cpu() for name, value in noise.items()},
            input_image=input_image,
        )

    def learn_direction(self, target: Union[Target, str, Path], sources: Sequence[AnySource], **options) -> SoundDirection:
        """One sound's direction over `sources`: learn_directions([target], sources, **options)[0]."""
        return self.learn_directions([target], sources, **options)[0]

    @holding_generator
    def learn_directions(
        self,
        targets: Sequence[Union[Target, str, Path]],
        sources: Sequence[AnySource],
        settings: Optional[EditSettings] = None,  # steps, lr, loss weights, precision, invert_steps; None: the defaults
        *,
        layers: Optional[Iterable[int]] = None,  # W+ rows the offsets may move; None: all
        holdout: int = 3,  # seeds each direction is measured on afterwards (0: none)
        sources_per_step: Optional[int] = None,
        names: Optional[Sequence[str]] = None,
        callback: Optional[StepCallback] = None,
        class_index: Optional[int] = None,  # the class of the seed sources (conditional generators)
        seed: int = 0,  # seeds the inversion of image sources
        **changes,  # EditSettings fields over `settings`, as for edit: steps, lr, weights, lambda_latent, ...
    ) -> list[SoundDirection]:
        """Learn one shared W+ offset per target over all `sources` in one batched optimisation (batch = targets x
        sources): sample (k, i) is w_src_i + offset_k and scores the preset's loss terms, so each offset minimises
        the mean CLIP loss of every source moved by it, its size penalised (the latent term is ||offset||^2) and
        each source's identity kept where the preset weights it. Sources are rendered with the generator's own noise.

        `holdout` > 0 then measures each direction on that many seeds it never saw (the first seeds not among the
        sources) against the same target optimised per image (evaluate_directions); the numbers ride in `.holdout`.
        `sources_per_step`: each step renders and scores only that many sources (in turn, in order; every offset at
        every step), so a direction over 16 sources costs about that many per-image edits; None: all of them.
        `names`: one file-name-safe name per target (default: the sound's file stem, else the text).
        """
        from checkpoints.download import sha256_file
        from sgsim import __version__

        settings = (settings if settings is not None else EditSettings()).updated(**changes)
        steps, lr = settings.steps, settings.lr
        self.require_encoders("learn a direction")
        targets = self._check_targets(targets, "weighted")
        check_settings(steps, lr, "weighted", (1.0,))
        if int(holdout) != holdout or holdout < 0:
            raise SgsimError(f"holdout must be a whole number of seeds >= 0, got {holdout}")
        names = direction_names(targets) if names is None else [str(name) for name in names]
        if len(names) != len(targets) or len(set(names)) != len(names):
            raise SgsimError(f"give one distinct name per target: {len(targets)} targets, names {names}")
        free_rows(layers, self.generator.num_ws)  # bad rows fail before any work
        sources = [_with_photo_settings(as_source(source), settings) for source in sources]
        if not sources:
            raise SgsimError("no sources: a direction is learned over one or more seeds, latents or images (16 is a good number)")
        run = self.prepare_run(settings.precision, settings.loss_weights, settings.lambda_latent, settings.lambda_id,
                               adaptive_layer_masking=settings.adaptive_layer_masking)
        weights = run.weights

        embeddings = [embed_target(t, self.audio_encoder, self.clip) for t in targets]  # bad sounds fail before inversion
        aims = torch.stack([e.mixed(t.weight) for e, t in zip(embeddings, targets)]).to(self.device)
        w_sources = torch.stack([self.source_start(source, seed, settings.invert_steps, class_index, truncation=settings.truncation)[0]
                                 for source in sources])
        variables = SharedOffset(w_sources, layers, count=len(targets))
        # Sources are rendered with the generator's own noise (an image source's fitted noise is not carried).
        cap, rule = steps_and_rule(steps)
        optimised = self.optimise(run, variables.sources(), aims.repeat_interleave(len(sources), dim=0), steps=cap, lr=lr,
                                  variables=variables, batches=variables.batches(sources_per_step), callback=callback, stop=rule)
        offsets = variables.offsets().cpu()

        record = {
            "steps": steps, "steps_used": len(optimised.losses["total"]), "steps_reason": optimised.stopped, "lr": lr,
            "weights": weights, "layers": None if layers is None else sorted({int(i) for i in layers}),
            "sources": [_describe_source(source) for source in sources], "class_index": class_index,
            "sources_per_step": sources_per_step, "preset_name": self.preset_name, "device": str(self.device),
            "precision": run.precision.name, "precision_reason": run.precision.reason,
        }
        directions = []
        for k, (name, target) in enumerate(zip(names, targets)):
            sound = None
            if isinstance(target.audio, (str, Path)):
                sound = {"file": Path(target.audio).name, "sha256": sha256_file(Path(target.audio))}
            directions.append(SoundDirection(
                name=name, offset=offsets[k], target=aims[k].cpu(), generator=self._generator_record(),
                encoder={"name": getattr(self.audio_encoder, "name", type(self.audio_encoder).__name__),
                         "state_sha256": self.checksum("audio_encoder")},
                clip={"name": getattr(self.audio_encoder, "clip_model", type(self.clip).__name__), "state_sha256": self.checksum("clip")},
                sound=sound, text=target.text, settings={**record, "text_weight": target.weight}, sgsim_version=__version__,
            ))
        if holdout:
            seen = {source.seed for source in sources if isinstance(source, SeedSource)}
            seeds = [s for s in range(len(seen) + holdout) if s not in seen][:holdout]
            for direction, measured in zip(directions, self.evaluate_directions(
                    directions, seeds, steps=steps, lr=lr, weights=weights, layers=layers, class_index=class_index,
                    precision=run.precision.name)):
                direction.holdout = measured
        return directions

    @holding_generator
    def evaluate_directions(self, directions: Sequence[SoundDirection], seeds: Sequence[int], steps: Union[int, str] = 300,
                            lr: float = 0.1, weights: Optional[Mapping[str, float]] = None, layers: Optional[Iterable[int]] = None,
                            class_index: Optional[int] = None, precision: Optional[str] = None) -> list[dict]:
        """How well each direction generalises to `seeds`: the CLIP loss toward its target (and the identity distance
        to the source, when the identity term is on) of each seed's image as it is, moved by the direction at
        strength 1, and optimised per image (`steps` of sgsim edit, all seeds and directions in one batch).
        `gain_fraction` = mean CLIP-loss gain of the direction / that of the per-image optimisation. The per-image
        optimisation runs in `precision` as `edit` does; the measurements render in fp32."""
        from sgsim.losses import EditProblem, StepInputs

        self.require_encoders("evaluate a direction")
        run = self.prepare_run(precision, weights, None, None)
        weights, networks = run.weights, run.networks
        for direction in directions:
            check_generator(direction, self.generator)
        seeds = [int(seed) for seed in seeds]
        w_seeds = torch.stack([seed_latent(self.generator, seed, class_index=class_index) for seed in seeds])
        aims = torch.stack([d.target for d in directions]).to(self.device).repeat_interleave(len(seeds), dim=0)
        offsets = torch.stack([d.offset for d in directions]).to(self.device)
        sources = w_seeds.repeat(len(directions), 1, 1)  # sample (k, i) at k * len(seeds) + i, as SharedOffset lays out
        moved = sources + offsets.repeat_interleave(len(seeds), dim=0)
        cap, rule = steps_and_rule(steps)
        with phase_bar(cap, "held-out check") as on_step:
            optimised = self.optimise(run, sources, aims, steps=cap, lr=lr, layers=layers, callback=on_step, stop=rule).latents
        problem = EditProblem(self.generator, self.clip, aims, sources, networks)
        measures = {"clip": ClipDirection().prepare(problem)}
        if weights.get("id", 0) > 0:
            measures["id"] = IdentityTerm().prepare(problem)
        scores: dict[str, torch.Tensor] = {}
        with torch.no_grad():
            for label, latents in (("source", sources), ("direction", moved), ("per_image", optimised)):
                images = torch.cat([self.generator.synthesis(chunk, noise_mode="const") for chunk in latents.split(SYNTHESIS_BATCH)])
                for measure, score in measures.items():
                    if measure == "id" and label == "source":
                        continue  # 0 by definition
                    scores[f"{measure}_{label}"] = score(StepInputs(latents, images)).float().cpu().reshape(len(directions), len(seeds))
        results = []
        for k in range(len(directions)):
            row = {name: [float(v) for v in values[k]] for name, values in scores.items()}
            means = {f"{name}_mean": float(values[k].mean()) for name, values in scores.items()}
            gain = means["clip_source_mean"] - means["clip_per_image_mean"]
            results.append({
                "seeds": seeds, "steps": steps, **means, "per_seed": row,
                "gain_fraction": (means["clip_source_mean"] - means["clip_direction_mean"]) / gain if gain > 0 else None,
            })
        return results

    @holding_generator
    def apply(
        self,
        directions: Union[SoundDirection, Sequence[SoundDirection]],
        source: AnySource,
        strengths: Sequence[float] = (1.0,),
        weights: Optional[Sequence[float]] = None,
        seed: int = 0,
        invert_steps: int = 1000,
        class_index: Optional[int] = None,
        noise: Optional[dict[str, torch.Tensor]] = None,
    ) -> AppliedEdit:
        """`source` moved along learned directions, one generator pass per strength, no optimisation:
        w = w_src + strength * sum_j weights_j * offset_j (weights default 1 each, so rain + fire is one pass).
        Strength 0 is the source exactly. `source`, `seed`, `invert_steps`, `class_index` and `noise` as for edit.
        A direction learned on another architecture is refused; on other weights of the same one, a warning."""
        directions = [directions] if isinstance(directions, SoundDirection) else list(directions)
        strengths = check_strengths(strengths)
        for direction in directions:
            check_generator(direction, self.generator, self.checksum("generator"))
        offset = combined_offset(directions, weights).to(self.device)
        w_source, fitted_noise, _ = self.source_start(source, seed, invert_steps, class_index)
        noise = {name: torch.as_tensor(value).to(self.device) for name, value in (noise or fitted_noise).items()}
        latents = strength_latents(w_source, offset, strengths)
        with swapped_noise(self.generator, noise):
            images = self.render(latents)
        return AppliedEdit(images=images, latents=latents.cpu(), source_latent=w_source.cpu(), strengths=strengths,
                           offset=offset.cpu(), noise={name: value.cpu() for name, value in noise.items()})

    def checksum(self, component: str) -> str:
        """state_sha256 of the generator, audio_encoder or clip, hashed once per Editor."""
        if component not in self._checksums:
            self._checksums[component] = state_sha256(getattr(self, component))
        return self._checksums[component]

    def _generator_record(self) -> dict:
        """What a direction records of the generator it was learned on: name, architecture, weights checksum."""
        name = self.weight_files.get("generator")
        if name is not None:
            name = components.manifest_generator(name) or str(name)
        return {"name": name, "architecture": architecture(self.generator), "state_sha256": self.checksum("generator")}

    def require_encoders(self, what: str) -> None:
        """Refuse `what` on an Editor built without an audio encoder and CLIP (one that only applies directions)."""
        if self.audio_encoder is None:
            raise SgsimError(f"this Editor has no audio encoder and CLIP (it only applies directions); to {what}, "
                             f"load one with Editor.from_pretrained(generator, encoder, ...)")

    def video(self, audio: Union[str, Path], source: AnySource, **options) -> "VideoEdit":
        """A video whose picture follows the track `audio` over time (sgsim.editing.video.make_video).

        Keyframes every `keyframe_every` s (0.5) aim at the `window` s (2.0, or the world's own) of the track centred
        on them; they are optimised `keyframe_batch` (8; None: all) at a time in time order (`steps` 100 for the first
        batch, `warm_steps` (25, at most `steps`) for each later one, which starts from the keyframe before it; `lr`,
        `weights`, `layers`, `precision`, `work_resolution` as in `edit`) with the temporal smoothness term (weight
        `smoothness`, 0.01) between neighbours. A quiet window (sgsim.editing.video.audible_windows) has no target and
        its keyframe stays at the source. Each keyframe's edit is scaled by `strength` and, with `loudness` (on),
        by its window's loudness scale. Returns a VideoEdit: iterate it for VideoFrame(index, time, image, latent)
        at `fps` (24), round(duration x fps) frames rendered a few at a time; sgsim.editing.video.write_video
        writes it as an MP4 with the track. `progress(stage, done, total)` reports "embed", "optimise", "render".
        `direction` (a SoundDirection): each keyframe starts at w_src + reach_k * offset, reach_k = max(0, cos(window
        embedding, direction target)) (0 for quiet windows); `steps` 0 then skips the optimisation (instant video).
        """
        from sgsim.editing.video import make_video

        return make_video(self, audio, source, **options)

    def prepare_run(self, precision: Optional[str], weights: Optional[Mapping[str, float]], lambda_latent: Optional[float] = None,
                    lambda_id: Optional[float] = None, *, free: bool = False, adaptive_layer_masking: bool = False) -> "PreparedRun":
        """What every optimisation settles first: its precision (and why), the loss weights over the preset's (see
        loss_weights), and the helper networks those terms need (a term whose network is absent is turned off, with a
        warning)."""
        chosen = choose_precision(precision, self.device)
        weights = self.loss_weights(weights, lambda_latent, lambda_id, free=free, adaptive_layer_masking=adaptive_layer_masking)
        return PreparedRun(chosen, weights, self.networks_for(weights))

    @holding_generator
    def optimise(self, run: "PreparedRun", start: torch.Tensor, aims: torch.Tensor,
                 noise: Optional[Mapping[str, torch.Tensor]] = None, **loop) -> OptimisedLatents:
        """The one optimisation path of edit, learn_directions, evaluate_directions and video: optimise_latents from
        `start` toward `aims` under the run's precision and with `noise` in the generator, both held for this call
        only (`loop`: optimise_latents' steps, lr, layers, variables, batches, callback, ...)."""
        with swapped_noise(self.generator, dict(noise or {})):
            with edit_precision(run.precision.name, self.generator, self.clip, synthesis=self.mixed_synthesis,
                                helpers=run.networks.values()) as image_encoder:
                return optimise_latents(self.generator, image_encoder, start, aims.to(self.device), weights=run.weights,
                                        networks=run.networks, **loop)

    def loss_weights(self, weights: Optional[Mapping[str, float]], lambda_latent: Optional[float],
                     lambda_id: Optional[float], *, free: bool = False, adaptive_layer_masking: bool = False) -> dict[str, float]:
        """The preset's loss weights updated by `weights` and the lambda_* aliases, checked. `free` (free generation):
        the preset's terms other than CLIP weigh 0, as the official script's free mode minimises the CLIP loss alone.
        `adaptive_layer_masking`: the latent term's weight moves to adaptive_latent (the official rule), latent 0."""
        aliases = {name: value for name, value in (("latent", lambda_latent), ("id", lambda_id)) if value is not None}
        if not all(math.isfinite(v) and v >= 0 for v in aliases.values()):
            raise SgsimError(f"lambda_latent and lambda_id must be finite numbers >= 0, got {lambda_latent} and {lambda_id}")
        preset = {name: (weight if name == "clip" else 0.0) for name, weight in self.preset.weights.items()} if free else self.preset.weights
        chosen = check_weights({**preset, **(weights or {}), **aliases})
        if adaptive_layer_masking:
            chosen["adaptive_latent"] = chosen.get("adaptive_latent", 0.0) + chosen["latent"]
            chosen["latent"] = 0.0
        return chosen

    def networks_for(self, weights: dict[str, float]) -> dict[str, object]:
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
                    warnings.warn(f"editing without the {absent[0]} loss ({name} weight 0): {self._missing[absent[0]]}",
                                  category=SgsimNotice, stacklevel=3)
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
