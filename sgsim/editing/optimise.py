"""The latent optimisation of SGSIM / StyleCLIP: move W+ until CLIP sees the target in the image.

The loss is the weighted sum of the loss terms named in `weights` (sgsim.losses); this loop names none of
them. Fixes the reference's defects (docs/reference.md#reference-defects-fixed): images are clamped, rescaled and normalised by
the CLIP wrapper before the image tower, the identity loss sends its gradient to the edited image, and a NaN
or infinite loss stops the run instead of silently poisoning it.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Mapping, Optional, Sequence, Union

import numpy as np
import torch

from sgsim.editing.stopping import FlatteningRule, stop_reason
from sgsim.editing.variables import FreeRows, LatentVariables, free_rows
from sgsim.errors import SgsimError
from sgsim.host_memory import generator_memory_kept
from sgsim.losses import TERMS, EditProblem, StepInputs, check_weights
from sgsim.progress import phase_bar
from sgsim.schedule import ramped_lr
from sgsim.settings import check_work_resolution
from stylegan2.errors import NetworkConfigError
from stylegan2.networks import SynthesisNetwork

TOTAL = "total"  # name of the weighted sum in the recorded losses

# callback(step, losses, **values): called after every step with the batch-mean of "total" and of every term, and
# the values the caller declared in `callback_values` (as diffusers' callback_on_step_end_tensor_inputs) by name.
StepCallback = Callable[..., None]
# What a step callback may ask for: "latents" [n, num_ws, w_dim] the step rendered (its samples), "images" [n, 3, H, W]
# in the generator's range as the step drew them (before clamping); both detached, on the device, not to be kept.
STEP_VALUES = ("latents", "images")

# The working resolution of a CPU edit with work_resolution "auto": the smallest block at or above CLIP's 224 px input
# (the identity network sees a 188 px crop of a 256 px image, pooled to 112 px).
CPU_WORK_RESOLUTION = 256
# Whether auto uses CPU_WORK_RESOLUTION on a CPU: only once scripts/bench_edit.py --vs-full --tolerance shows the
# full-size scores of such edits within the documented bounds (README, Performance). They held for a 512 px generator
# but not for a 1024 px one (identity distance +0.050 at 256 px, +0.129 at 512 px; bound 0.01), on random weights.
AUTO_WORK_RESOLUTION_ON_CPU = False


@dataclass(frozen=True)
class WorkResolution:
    """The resolution an edit optimises at, as asked for, as used, and why (run.json records all three)."""

    requested: str  # "auto", "full" or a number of pixels, as given
    used: Optional[int]  # the block whose running image the losses see; None: the generator's full image
    reason: str


def choose_work_resolution(requested: Union[str, int, None], generator, device: torch.device) -> WorkResolution:
    """`requested` ("auto" / None, "full" or a block resolution) made concrete for `generator` on `device`. auto: the
    CPU_WORK_RESOLUTION on a CPU with a StyleGAN2 skip generator above it where AUTO_WORK_RESOLUTION_ON_CPU; the full
    image elsewhere. A lower block of any other generator (StyleGAN3, resnet) is refused: it has no image there."""
    try:
        requested = check_work_resolution("auto" if requested is None else requested)
    except SgsimError as exc:
        raise SgsimError(f"{exc}; use auto, full or a block resolution") from None
    synthesis = generator.synthesis
    top = int(synthesis.img_resolution)
    skip = isinstance(synthesis, SynthesisNetwork) and synthesis.b4.architecture == "skip"
    device = torch.device(device).type
    if requested == "full":
        return WorkResolution(requested, None, "full: asked for")
    if requested == "auto":
        if device != "cpu":
            return WorkResolution(requested, None, f"auto: full resolution on {device}")
        if not AUTO_WORK_RESOLUTION_ON_CPU:
            return WorkResolution(requested, None, f"auto: full resolution until the {CPU_WORK_RESOLUTION} px working "
                                  f"resolution's quality is measured; --work-resolution {CPU_WORK_RESOLUTION} asks for it")
        if top <= CPU_WORK_RESOLUTION:
            return WorkResolution(requested, None, f"auto: the generator's {top} px are within the {CPU_WORK_RESOLUTION} px the losses see")
        if not skip:
            return WorkResolution(requested, None, "auto: only a StyleGAN2 skip generator has an image below its top block")
        return WorkResolution(requested, CPU_WORK_RESOLUTION, f"auto: CPU and a {top} px generator; the losses see "
                              f"{CPU_WORK_RESOLUTION} px or less (CLIP 224 px, identity 112 px)")
    pixels = int(requested)
    if pixels >= top:
        return WorkResolution(requested, None, f"{pixels}: at or above the generator's {top} px, so its full image")
    if not isinstance(synthesis, SynthesisNetwork):
        raise SgsimError(f"work resolution {pixels}: only StyleGAN2 skip generators have an image below their top "
                         f"block, this one is {type(generator).__module__}.{type(generator).__name__}; use auto or full")
    try:
        synthesis.check_resolution(pixels)
    except NetworkConfigError as exc:
        raise SgsimError(f"work resolution {pixels}: {exc}; use auto or full") from None
    return WorkResolution(requested, pixels, f"{pixels}: asked for")


class WorkingGenerator:
    """A generator whose synthesis stops at `resolution` (its running image there): what the loop and its loss terms
    render, so that the source images the terms compare with are at that resolution too."""

    def __init__(self, generator, resolution: int):
        self.generator = generator
        self.img_resolution = resolution
        self.num_ws = generator.num_ws

    def synthesis(self, ws: torch.Tensor, **options) -> torch.Tensor:
        return self.generator.synthesis(ws, resolution=self.img_resolution, **options)


def working_layers(generator, work_resolution: Optional[int], layers: Optional[Iterable[int]]) -> Optional[list[int]]:
    """The W+ rows an edit at `work_resolution` may move: `layers` (None: all) less the rows that only the blocks above
    it read, which receive no gradient there and stay where they start (at the source, unless a caller moved them)."""
    if work_resolution is None:
        return None if layers is None else list(layers)
    read = generator.synthesis.rows_read(work_resolution)
    rows = free_rows(layers, generator.num_ws).tolist()
    kept = [row for row in rows if row < read]
    if not kept:
        raise SgsimError(f"none of the W+ rows {rows} is read at the work resolution {work_resolution} px "
                         f"(rows 0-{read - 1} are); use --work-resolution full or other --layers")
    return kept


@contextmanager
def cooled_rows(variables: LatentVariables, factors: np.ndarray) -> Iterator[None]:
    """Scale the optimiser step taken inside by `factors` [N] per sample (a learning rate per row: Adam's step is
    linear in it). A parameter whose rows are samples (`variables.samples`: the sample of each leading row) is scaled
    row by row; one that samples share (a direction's offset) by the largest factor, so it cools once all have."""
    parameters = variables.parameters()
    before = [p.detach().clone() for p in parameters]
    yield
    factors = torch.as_tensor(factors, dtype=torch.float32)
    owners = getattr(variables, "samples", None)
    with torch.no_grad():
        for parameter, start in zip(parameters, before):
            factor = factors.max() if owners is None else factors[owners.cpu()].view(-1, *[1] * (parameter.dim() - 1))
            parameter.copy_(start + (parameter - start) * factor.to(parameter.device, parameter.dtype))


class EditDiverged(SgsimError):
    """The loss became NaN or infinite; the last latents whose loss was finite ride along."""

    def __init__(self, message: str, step: int, last_latents: torch.Tensor, losses: dict[str, np.ndarray]):
        super().__init__(message)
        self.step = step
        self.last_latents = last_latents  # [N, num_ws, w_dim], the latents of the last finite step
        self.losses = losses  # per-step losses up to (not including) `step`


@dataclass
class OptimisedLatents:
    """Latents after the last step, the per-step losses and the images recorded along the way."""

    latents: torch.Tensor  # [N, num_ws, w_dim]
    losses: dict[str, np.ndarray]  # "total" and each term's name -> [steps run, N]
    frames: list[torch.Tensor] = field(default_factory=list)  # each [N, 3, H, W] in [-1, 1], on the CPU
    steps_used: list[int] = field(default_factory=list)  # per sample: the steps its latents ran (with `stop`: its own stop)
    stopped: str = ""  # why the loop stopped where it did (sgsim.editing.stopping.stop_reason)


def optimise_latents(
    generator,  # stylegan2.Generator: synthesis(ws, noise_mode='const') -> NCHW in [-1, 1]
    clip,  # encoders ClipModel: encode_image(images in [-1, 1]) -> [N, embed_dim]
    source: torch.Tensor,  # [N, num_ws, w_dim] W+ latents to start from and stay near
    directions: torch.Tensor,  # [N, embed_dim] L2-normalised CLIP-space targets, one per latent
    *,
    steps: int,  # number of Adam steps; with `stop`, the most it runs (the learning-rate ramp runs over them)
    lr: float,  # peak learning rate of the ramped schedule
    weights: Mapping[str, float],  # loss term name (sgsim.losses.TERMS) -> weight; weight 0 turns a term off
    networks: Optional[Mapping[str, object]] = None,  # helper networks the terms need: "identity", "lpips"
    layers: Optional[Iterable[int]] = None,  # W+ rows that move (FreeRows); the others stay exactly as in `source`
    variables: Optional[LatentVariables] = None,  # what Adam moves; default FreeRows(source, layers)
    batches: Optional[Sequence[torch.Tensor]] = None,  # sample index sets, one per step in turn; None: every sample every step
    target_weights: Optional[torch.Tensor] = None,  # [N] weight of each sample's target (0: none); None: 1 each
    callback: Optional[StepCallback] = None,
    callback_values: Sequence[str] = (),  # of STEP_VALUES: passed to `callback` by name (a preview needs no hook)
    record_every: int = 0,  # > 0: keep the images of every k-th step and of the result (for a video)
    work_resolution: Optional[int] = None,  # render and score the running image of this block (WorkResolution.used); None: full
    stop: Optional[FlatteningRule] = None,  # end each sample once its loss flattens (and cools); stop once all have
) -> OptimisedLatents:
    """Adam minimising the sum over samples of sum_term weight * term(G(w), w). A term off (weight 0) is not
    evaluated and records zeros. The batch loss is the sum of per-sample losses, so with terms that score each
    sample alone, each sample follows the path it would follow alone (up to float rounding).

    With `batches`, step t renders and scores only the samples batches[t % len(batches)] (minibatches: a shared
    offset learned over many sources at the cost of a few); the losses of samples not scored at a step are NaN.

    With `work_resolution` the loop renders only up to that block (StyleGAN2 skip generators) and its default
    variables move only the rows read there (working_layers; given `variables` should be built from those rows);
    recorded losses and frames are at that resolution.

    With `stop` a sample whose total loss the rule finds flattened ends as it would alone (samples score alone): with
    the rule's cooldown its learning rate alone cools to zero over that many steps (cooled_rows) and its result is
    where that leaves it; without one it stops there with the latents of its lowest total loss so far (at the full
    learning rate the loss bounces, and the latest step may sit on a bounce). The loop ends once every sample has
    ended (the losses hold the steps run); a sample that reaches the cap ends as the fixed run does, on its last step.
    Variables that samples share (a direction's offset) cool once every sample has flattened, and are as the last step
    left them. Samples not scored at a step (minibatches) are judged on the steps that scored them."""
    weights = check_weights(dict(weights))
    unknown = [name for name in callback_values if name not in STEP_VALUES]
    if unknown:
        raise SgsimError(f"a step callback cannot ask for {unknown[0]!r}; it may ask for {', '.join(STEP_VALUES)}")
    source = source.detach()
    variables = variables if variables is not None else FreeRows(source, working_layers(generator, work_resolution, layers))
    rendered = WorkingGenerator(generator, work_resolution) if work_resolution is not None else generator
    problem = EditProblem(rendered, clip, directions, source, dict(networks or {}), target_weights)
    active = {name: weight for name, weight in weights.items() if weight > 0}
    missing = {name: need for name in active for need in TERMS[name].needs if need not in problem.networks}
    if missing:
        name, need = next(iter(missing.items()))
        raise SgsimError(f"the loss term {name!r} needs the {need} network; pass it in networks or give {name!r} weight 0")
    everyone = torch.arange(source.shape[0], device=source.device)
    batches = [everyone] if batches is None else [torch.as_tensor(b, device=source.device).long() for b in batches]
    if not batches or any(len(b) == 0 or b.min() < 0 or b.max() >= len(everyone) for b in batches):
        raise SgsimError(f"batches must be non-empty sets of sample indices in 0..{len(everyone) - 1}")
    # Per-optimisation work happens once per batch, here (one batch, the problem itself, without minibatches).
    term_losses = [{name: TERMS[name]().prepare(problem if b is everyone else problem.subset(b)) for name in active} for b in batches]
    columns = [b.cpu().numpy() for b in batches]  # history columns of each batch, on the host once
    names = [TOTAL, *weights]
    optimizer = torch.optim.Adam(variables.parameters(), lr=lr)
    history = {name: np.full((steps, source.shape[0]), 0.0 if batches[0] is everyone else np.nan) for name in names}
    frames: list[torch.Tensor] = []
    last_finite = source.clone()
    used = 0
    stopped_at = np.zeros(source.shape[0], dtype=int)  # with `stop`: the steps after which each sample flattened, 0: not yet
    best_loss = np.full(source.shape[0], np.inf)  # with `stop`: each sample's lowest total loss so far
    best = source.clone()  # ... and the latents that scored it

    def diverged(step: int, what: str) -> EditDiverged:
        return EditDiverged(
            f"the edit diverged at step {step}: the {what} became NaN or infinite; "
            f"lower --lr (now {lr}) or the loss weights; the last finite latents are attached to this error",
            step, last_finite, {k: v[:step] for k, v in history.items()},
        )

    # Every step frees and re-requests the same large blocks.
    with generator_memory_kept(generator, source.device, max(len(b) for b in batches), work_resolution), \
            phase_bar(steps, "optimising", callback) as callback:  # a bar when the caller follows no steps
        for step in range(steps):
            for group in optimizer.param_groups:
                group["lr"] = ramped_lr(step, steps, lr)
            batch = batches[step % len(batches)]
            w = variables.latents()
            w_batch = w if batch is everyone else w[batch]
            images = rendered.synthesis(w_batch, noise_mode="const")
            inputs = StepInputs(latents=w_batch, images=images)
            losses = {name: term(inputs) for name, term in term_losses[step % len(batches)].items()}
            total = sum(weight * losses[name] for name, weight in active.items())
            losses[TOTAL] = total
            if record_every > 0 and step % record_every == 0:
                frames.append(images.detach().cpu())
            optimizer.zero_grad(set_to_none=True)
            # Backward outside any autocast region the caller opened (edit_precision's bf16): on the CPU the backward
            # runs in this thread, and autocast would recast its matmuls (PyTorch advises against backward under it).
            with torch.autocast(device_type=source.device.type, enabled=False):
                total.sum().backward()
            if stop is not None and stop.cooldown and stopped_at.any():
                with cooled_rows(variables, stop.cooling(np.where(stopped_at > 0, step - stopped_at, -1))):
                    optimizer.step()
            else:
                optimizer.step()
            # One device-to-host copy per step, once the whole step is queued: the device need not idle while the
            # host queues the backward pass. A non-finite loss still stops the run at this step, with the latents
            # of the previous one (this step's update is discarded with the error).
            recorded = [name for name in names if name in losses]
            values = torch.stack([losses[name].detach().float() for name in recorded]).cpu().numpy()
            if not np.isfinite(values[0]).all():
                raise diverged(step, "loss")
            last_finite = w.detach()
            scored = columns[step % len(batches)]
            for name, row in zip(recorded, values):
                history[name][step, scored] = row
            used = step + 1
            if callback is not None:
                named = {"latents": w_batch.detach(), "images": images.detach()}
                callback(step, {name: float(history[name][step, scored].mean()) for name in names},
                         **{name: named[name] for name in callback_values})
            if stop is not None:
                if not stop.cooldown:  # a row stops at once: keep its lowest-loss latents
                    with np.errstate(invalid="ignore"):  # NaN: a sample this step did not score
                        better = (history[TOTAL][step] < best_loss) & (stopped_at == 0)
                    if better.any():
                        best_loss = np.where(better, history[TOTAL][step], best_loss)
                        best = torch.where(torch.as_tensor(better, device=best.device)[:, None, None], w.detach(), best)
                stopped_at[stop.flattened(history[TOTAL][:used]) & (stopped_at == 0)] = used
                if stopped_at.all() and (used - stopped_at >= stop.cooldown).all():
                    break
    history = {name: values[:used] for name, values in history.items()}
    with torch.no_grad():
        latents = variables.latents().detach()
        if stop is not None and not stop.cooldown:
            latents = torch.where(torch.as_tensor(stopped_at > 0, device=latents.device)[:, None, None], best, latents)
    if not torch.isfinite(latents).all():
        raise diverged(used, "latent")
    if record_every > 0:  # the frames show each step's input; the video ends on what the last step made
        with torch.no_grad():
            frames.append(rendered.synthesis(latents, noise_mode="const").detach().cpu())
    steps_used = np.where(stopped_at > 0, np.minimum(stopped_at + (stop.cooldown if stop else 0), used), used).tolist()
    return OptimisedLatents(latents=latents, losses=history, frames=frames, steps_used=steps_used,
                            stopped=stop_reason(stop, used, steps_used, int((stopped_at > 0).sum())))
