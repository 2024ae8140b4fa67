"""How good an edit is, measured on the folders sgsim writes: how strongly each edited image shows its target (CLIP
similarity to the sound's and the text's embedding, CLIP direction similarity), how much of the source survives
(ArcFace identity for face generators, LPIPS, latent distance), with the networks each run recorded.

Definitions (per edited image x, its source image x0, W+ latents w and w0, target embedding t, CLIP image tower E):
- target_similarity = cos(E(x), t_sound); text_similarity = cos(E(x), E_text(text)); *_gain = the same minus x0's
- direction_similarity = cos(E(x) - E(x0), t - E_text(neutral)): the image's change against the target's change from
  a neutral caption (StyleGAN-NADA's directional CLIP score, with a sound's embedding where a text's would be)
- identity_similarity = cos(ArcFace(x), ArcFace(x0)); lpips = LPIPS-VGG16(x, x0); latent_distance = ||w - w0||^2,
  summed over W+ (the edit loss's latent term)
- for runs on a world's generator (sgsim.worlds), the world's pixel judge reads x and x0 and sgsim.worlds.judged.score
  counts, toward the colour and shape the target's words name: reached, kept_colour, kept_shape, kept_position, success
  (1 or 0 per edit, a rate in the summary)
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from sgsim.errors import SgsimError
from sgsim.evaluation.folders import EditFolder, EditedImage, recorded_path

NEUTRAL_TEXT = "a photo"  # the caption the target's change is measured from (direction_similarity)
DEFAULT_ENCODER = "sgsim-resnet18"  # guide of runs that record none (apply: directions were learned elsewhere)
METRICS = ("target_similarity", "target_gain", "text_similarity", "text_gain", "direction_similarity",
           "identity_similarity", "lpips", "latent_distance")
IDENTITY_MODES = ("auto", "on", "off")  # auto: for face generators only
JUDGED = ("reached", "kept_colour", "kept_shape", "kept_position", "success")  # sgsim.worlds.judged.score's rates


@dataclass(frozen=True)
class Guide:
    """The networks that embed a run's targets: an audio encoder (name and weights file) and its CLIP weights."""

    encoder: str
    encoder_checkpoint: Optional[str]
    clip: Optional[str]


@dataclass
class Networks:
    """Loaded networks, each once per evaluation: guides by their files, and the source-keeping networks."""

    device: torch.device
    identity_weights: Optional[str]
    lpips_weights: Optional[str]
    guides: dict[Guide, tuple] = field(default_factory=dict)
    _identity: object = None
    _lpips: object = None
    missing: list[str] = field(default_factory=list)

    def guide(self, guide: Guide) -> tuple:
        """(audio encoder, CLIP) of a guide, loaded on first use."""
        if guide not in self.guides:
            from sgsim import components
            from sgsim.worlds import ENCODER_NAME, register_world

            if guide.encoder == ENCODER_NAME:  # a world's encoder is known once its world is registered
                register_world(Path(guide.clip) if guide.clip else None)
            encoder = components.load_audio_encoder(guide.encoder, guide.encoder_checkpoint, self.device).component
            clip = components.load_clip_for(encoder, guide.clip, self.device).component
            self.guides[guide] = (encoder, clip)
        return self.guides[guide]

    def identity(self):
        """ArcFace (sgsim.identity.ArcFace), or None when its weights are not here (noted once)."""
        if self._identity is None and self.identity_weights is not None:
            self._identity = self._optional(lambda: _load("identity", self.identity_weights, self.device), "ArcFace")
        return self._identity or None

    def lpips(self):
        if self._lpips is None and self.lpips_weights is not None:
            self._lpips = self._optional(lambda: _load("lpips", self.lpips_weights, self.device), "LPIPS")
        return self._lpips or None

    def _optional(self, load: Callable, label: str):
        from checkpoints import MissingWeightsError

        try:
            return load()
        except MissingWeightsError as exc:
            self.missing.append(f"{label} not measured: {exc}")
            return False


def _load(kind: str, weights: str, device: torch.device):
    """The ArcFace network ('identity') or the LPIPS distance ('lpips') from its weights."""
    from sgsim import components

    if kind == "identity":
        return components.load_identity(weights, device).component.net
    return components.load_lpips(weights, device).component


def record_guide(record: dict, override: Optional[Guide] = None) -> Guide:
    """The guide a run recorded (the exact weights files it loaded where it says), else the default encoder."""
    if override is not None:
        return override
    files = record.get("weights") if isinstance(record.get("weights"), dict) else {}

    def recorded(component: str, fallback: object) -> Optional[str]:
        entry = files.get(component)
        path = recorded_path(entry.get("path")) if isinstance(entry, dict) else None
        return str(path) if path is not None else (fallback if isinstance(fallback, str) and len(fallback) < 4096 else None)

    encoder = record.get("encoder")
    if not isinstance(encoder, str):
        return Guide(DEFAULT_ENCODER, None, None)
    return Guide(encoder, recorded("audio_encoder", record.get("encoder_checkpoint")), recorded("clip", record.get("clip")))


def is_face_run(record: dict) -> bool:
    """Whether the run edited a face generator, as the run decided it (its preset) or as its generator's name says."""
    from sgsim.editing.presets import FACE_PRESET, generator_kind

    settings = record.get("settings") if isinstance(record.get("settings"), dict) else {}
    return settings.get("preset_name") == FACE_PRESET or generator_kind(record.get("generator")).face


def is_world_run(record: dict) -> bool:
    """Whether the run edited the shapes world's generator: its record names the world, or the generator file it loaded
    names the world's training set (sgsim.worlds.build.DATASET) in its metadata."""
    from sgsim.worlds.build import DATASET

    settings = record.get("settings") if isinstance(record.get("settings"), dict) else {}
    if "shapes" in (record.get("world"), settings.get("world")):
        return True
    files = record.get("weights") if isinstance(record.get("weights"), dict) else {}
    entry = files.get("generator")
    path = recorded_path(entry.get("path") if isinstance(entry, dict) else record.get("generator"))
    return path is not None and _generator_dataset(path) == DATASET


def _generator_dataset(path: Path) -> Optional[str]:
    """The training set a generator file of sgsim's own format names in its header (None for any other file), read
    without loading a tensor."""
    from safetensors import SafetensorError, safe_open

    from stylegan2.loading.native import METADATA_PREFIX

    try:
        with safe_open(str(path), framework="pt") as stream:
            return (stream.metadata() or {}).get(f"{METADATA_PREFIX}dataset")
    except (SafetensorError, OSError, ValueError):
        return None


@dataclass(frozen=True)
class ImageTask:
    """One edited image to measure, with everything the folder says about it."""

    folder: EditFolder
    image: EditedImage
    strength: float
    sound: Optional[Path]
    text: Optional[str]
    latent: Optional[np.ndarray]  # [rows, dim] edited W+ latent, when latents.npz holds it
    source_latent: Optional[np.ndarray]
    guide: Guide
    face: bool
    world: bool  # judged by the shapes world's judge


def _read_image(path: Path) -> torch.Tensor:
    from PIL import Image

    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    return torch.from_numpy(pixels).permute(2, 0, 1) / 127.5 - 1.0


def _latents(folder: EditFolder) -> dict[str, np.ndarray]:
    """The arrays of the run's latents.npz that say which latent each image came from (checked as every latent file is)."""
    from sgsim.latents import read_latent_file

    path = folder.record_folder / "latents.npz"
    arrays = {}
    for key in ("swept", "source", "applied", "sources") if path.is_file() else ():
        try:
            arrays[key] = read_latent_file(f"{path}:{key}").latent.astype(np.float64)
        except SgsimError:
            continue
    return arrays


def _targets_in_order(record: dict) -> list[str]:
    """Target stems in the order the run edited them: the order its outputs list their first images."""
    from sgsim.evaluation.folders import EDITED

    order: list[str] = []
    for name in record.get("outputs") if isinstance(record.get("outputs"), list) else []:
        match = EDITED.fullmatch(Path(str(name)).name)
        if match and match["target"] not in order:
            order.append(match["target"])
    return order


def _latent_pair(folder: EditFolder, image: EditedImage, latents: dict[str, np.ndarray]) -> tuple[Optional[np.ndarray], Optional[np.ndarray]]:
    """(edited, source) W+ latents of an image: an edit's 'swept' [target, strength] or an apply's 'applied' [source, strength]."""
    record, strength = folder.record, float(image.strength)
    if "swept" in latents and "source" in latents:
        targets = _targets_in_order(record)
        asked = [float(s) for s in (record.get("settings") or {}).get("strengths") or []]
        if image.target in targets and strength in asked:
            t, s = targets.index(image.target), asked.index(strength)
            swept = latents["swept"]
            if swept.ndim == 4 and t < swept.shape[0] and s < swept.shape[1]:
                return swept[t, s], latents["source"]
    if "applied" in latents and "sources" in latents:
        names = [s.get("folder") for s in record.get("sources") or [] if isinstance(s, dict)]
        asked = [float(s) for s in record.get("strengths") or []]
        if folder.folder.name in names and strength in asked:
            n, s = names.index(folder.folder.name), asked.index(strength)
            return latents["applied"][n, s], latents["sources"][n]
    return None, None


def _target_text(record: dict, image: EditedImage) -> Optional[str]:
    """The text an image's target aimed at: its own text, or a direction's text."""
    from sgsim.outputs import safe_stem

    for target in record.get("targets") or record.get("directions") or []:
        if not isinstance(target, dict) or not isinstance(target.get("text"), str):
            continue
        audio = target.get("audio") or target.get("sound")
        stem = safe_stem(Path(audio).stem, "sound") if isinstance(audio, str) else safe_stem(target["text"], "text")
        if image.target.startswith(stem):
            return target["text"][:1000]
    return None


def plan(folders: Sequence[EditFolder], guide: Optional[Guide] = None, identity: str = "auto") -> list[ImageTask]:
    """Every edited image of `folders` as a task, with its sound, text, latents and guide."""
    tasks = []
    for folder in folders:
        latents = _latents(folder)
        face = identity == "on" or (identity == "auto" and is_face_run(folder.record))
        world = is_world_run(folder.record)
        run_guide = record_guide(folder.record, guide)
        for image in folder.images:
            try:
                strength = float(image.strength)
            except ValueError:
                continue
            edited, source = _latent_pair(folder, image, latents)
            tasks.append(ImageTask(folder, image, strength, folder.sound_for(image.target), _target_text(folder.record, image),
                                   edited, source, run_guide, face, world))
    return tasks


def _cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.cosine_similarity(a.float(), b.float(), dim=-1)


def measure(tasks: Sequence[ImageTask], networks: Networks, neutral_text: str = NEUTRAL_TEXT,
            progress: Callable[[int], None] = lambda done: None) -> list[dict]:
    """One row of metrics per task (NaN where a metric does not apply): images batched per folder against their source's
    features computed once, each target (guide, sound, text) and the neutral caption embedded once per call."""
    from sgsim.editing.targets import Target, embed_target

    targets: dict[tuple, object] = {}  # (guide, Target) -> TargetEmbedding, shared by every strength and folder of it
    neutrals: dict[Guide, torch.Tensor] = {}
    rows: list[dict] = []
    for folder, group in _by_folder(tasks):
        guide = group[0].guide
        encoder, clip = networks.guide(guide)
        with torch.no_grad():
            source = _read_image(folder.source)[None].to(networks.device)
            edited = torch.stack([_read_image(task.image.path) for task in group]).to(networks.device)
            source_features, features = clip.encode_image(source), clip.encode_image(edited)
            neutral = _once(neutrals, guide, lambda: clip.encode_text([neutral_text])[0])
            identity = networks.identity() if group[0].face else None
            if identity is not None:
                identity_sim = _cosine(identity.embed(edited), identity.embed(source))
            lpips = networks.lpips()
            lpips_distance = lpips(edited, source) if lpips is not None else None
            for i, task in enumerate(group):
                aim = Target(audio=task.sound, text=task.text) if (task.sound or task.text) else None
                embedding = _once(targets, (guide, aim), lambda: embed_target(aim, encoder, clip)) if aim is not None else None
                row = _row(task)
                if embedding is not None:
                    for name, target in (("target", embedding.sound), ("text", embedding.text)):
                        if target is not None:
                            row[f"{name}_similarity"] = float(_cosine(features[i], target))
                            row[f"{name}_gain"] = row[f"{name}_similarity"] - float(_cosine(source_features[0], target))
                    goal = embedding.sound if embedding.sound is not None else embedding.text
                    row["direction_similarity"] = float(_cosine(features[i] - source_features[0], goal - neutral))
                if identity is not None:
                    row["identity_similarity"] = float(identity_sim[i])
                if lpips_distance is not None:
                    row["lpips"] = float(lpips_distance[i])
                if task.latent is not None and task.source_latent is not None and task.latent.shape == task.source_latent.shape:
                    row["latent_distance"] = float(np.square(task.latent.astype(np.float64) - task.source_latent).sum())
                if task.world:
                    row.update(_judged(task, source[0].cpu(), edited[i].cpu(), networks.missing))
                rows.append(row)
        progress(len(group))
    return rows


def _once(cache: dict, key, compute: Callable[[], object]):
    """cache[key], computed on first use."""
    if key not in cache:
        cache[key] = compute()
    return cache[key]


def _judged(task: ImageTask, source: torch.Tensor, edited: torch.Tensor, missing: list[str]) -> dict:
    """The world judge's verdicts on one edit (1.0 or 0.0; NaN where the aim names that attribute), toward the colour
    and shape its target's words name (the text and the sound file's stem); all NaN, noted once, when they name none."""
    import re

    from sgsim.worlds.judged import Aim, score
    from sgsim.worlds.shapes import judge

    stem = re.sub(r"[^a-z]+", " ", Path(task.sound).stem.lower()) if task.sound else ""
    try:
        aim = Aim.of_words(task.text or "", stem)
    except ValueError as exc:
        note = f"judge: {task.image.target} not judged: {exc}"
        if note not in missing:
            missing.append(note)
        return {name: math.nan for name in JUDGED}
    verdict = score(judge(source[None]), judge(edited[None]), aim, edited.shape[-1])
    return {name: verdict.get(name, math.nan) for name in JUDGED}


def _by_folder(tasks: Sequence[ImageTask]) -> Iterable[tuple[EditFolder, list[ImageTask]]]:
    groups: dict[Path, list[ImageTask]] = {}
    for task in tasks:
        groups.setdefault(task.folder.folder, []).append(task)
    return [(group[0].folder, group) for group in groups.values()]


def _row(task: ImageTask) -> dict:
    guide = "+".join(kind for kind, present in (("sound", task.sound), ("text", task.text)) if present) or "unknown"
    return {"folder": str(task.folder.folder), "image": task.image.path.name, "command": task.folder.command,
            "target": task.image.target, "guide": guide, "encoder": task.guide.encoder, "strength": task.strength,
            **{metric: math.nan for metric in METRICS}}


def summarise(rows: Sequence[dict]) -> list[dict]:
    """Mean and 95 % half-width (1.96 standard errors) of every metric per guide, encoder and strength."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["guide"], row["encoder"], row["strength"]), []).append(row)
    summary = []
    for (guide, encoder, strength), members in sorted(groups.items(), key=lambda item: (item[0][0], item[0][1], item[0][2])):
        entry = {"guide": guide, "encoder": encoder, "strength": strength, "edits": len(members)}
        for metric in _measured(members):
            values = np.array([m.get(metric, math.nan) for m in members if not math.isnan(m.get(metric, math.nan))])
            entry[metric] = float(values.mean()) if values.size else math.nan
            entry[f"{metric}_ci95"] = float(1.96 * values.std(ddof=1) / math.sqrt(values.size)) if values.size > 1 else math.nan
        summary.append(entry)
    return summary


def _measured(rows: Sequence[dict]) -> tuple[str, ...]:
    """METRICS, then the judge's columns where some row of a world run has them."""
    return METRICS + tuple(name for name in JUDGED if any(name in row for row in rows))


def markdown(summary: Sequence[dict], missing: Sequence[str] = ()) -> str:
    """The summary as a Markdown table: mean ± 95 % half-width per metric (the judge's as rates of its edits)."""
    shown = [m for m in _measured(summary) if any(not math.isnan(row.get(m, math.nan)) for row in summary)]
    lines = ["| guide | encoder | strength | edits | " + " | ".join(shown) + " |",
             "| --- | --- | --- | --- | " + " | ".join("---" for _ in shown) + " |"]
    for row in summary:
        cells = []
        for metric in shown:
            mean, half = row.get(metric, math.nan), row.get(f"{metric}_ci95", math.nan)
            cells.append("-" if math.isnan(mean) else f"{mean:.4f}" + ("" if math.isnan(half) else f" ± {half:.4f}"))
        lines.append(f"| {row['guide']} | {row['encoder']} | {row['strength']:g} | {row['edits']} | " + " | ".join(cells) + " |")
    notes = [f"\nnote: {line}" for line in missing]
    return "\n".join(lines) + "\n" + "".join(notes) + ("\n" if notes else "")


def plot(rows: Sequence[dict], summary: Sequence[dict], path: os.PathLike) -> None:
    """Target similarity against what was kept (identity where measured, else 1 - LPIPS, else latent distance): a point
    per edit coloured by strength, and a curve per guide and encoder through its strengths' means."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sgsim.atomic import atomic_output

    kept, label = _kept_axis(rows)
    y_metric = "target_similarity" if any(not math.isnan(r["target_similarity"]) for r in rows) else "text_similarity"
    figure, axes = plt.subplots(figsize=(7, 5), dpi=120)
    strengths = sorted({r["strength"] for r in rows})
    colours = plt.get_cmap("viridis")(np.linspace(0, 0.9, max(1, len(strengths))))
    for strength, colour in zip(strengths, colours):
        points = [(kept(r), r[y_metric]) for r in rows if r["strength"] == strength]
        axes.scatter(*zip(*points), s=14, color=colour, alpha=0.6, label=f"strength {strength:g}")
    for guide, encoder in sorted({(s["guide"], s["encoder"]) for s in summary}):
        curve = sorted((s for s in summary if (s["guide"], s["encoder"]) == (guide, encoder)), key=lambda s: s["strength"])
        axes.plot([kept(s) for s in curve], [s[y_metric] for s in curve], marker="o", linewidth=1.5, label=f"{encoder} ({guide})")
    axes.set_xlabel(label)
    axes.set_ylabel(y_metric.replace("_", " "))
    axes.legend(fontsize=7)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    with atomic_output(path) as stream:
        stream.write(buffer.getvalue())


def _kept_axis(rows: Sequence[dict]) -> tuple[Callable[[dict], float], str]:
    if any(not math.isnan(r["identity_similarity"]) for r in rows):
        return (lambda r: r["identity_similarity"]), "identity similarity to the source (ArcFace)"
    if any(not math.isnan(r["lpips"]) for r in rows):
        return (lambda r: 1.0 - r["lpips"]), "1 - LPIPS to the source"
    return (lambda r: r["latent_distance"]), "latent distance to the source (||w - w0||^2)"


@dataclass
class EditReport:
    """Every edited image's metrics, their summary per guide, encoder and strength, and what could not be measured."""

    rows: list[dict]
    summary: list[dict]
    missing: list[str]


def find_runs(roots: Sequence[Path]) -> list[EditFolder]:
    """The edit folders under each root; a root without any is refused in one line, before any network loads."""
    from sgsim.evaluation.folders import find_edit_folders

    folders = []
    for root in roots:
        found = find_edit_folders(Path(root)) if Path(root).is_dir() else []
        if not found:
            raise SgsimError(f"{root} is not an sgsim run: no run.json with source.png and <target>_s<strength>.png images "
                             f"in it or below it; pass folders written by sgsim edit, apply or batch")
        folders += found
    return folders


def evaluate_edits(roots: Sequence[Path], guide: Optional[Guide] = None, identity: str = "auto",
                   identity_weights: Optional[str] = "arcface-ir-se50", lpips_weights: Optional[str] = "lpips-vgg16",
                   neutral_text: str = NEUTRAL_TEXT, device: str | torch.device = "cpu", progress: bool = True) -> EditReport:
    """Measure every edited image under `roots` with the networks each run recorded (or `guide`)."""
    from tqdm import tqdm

    if identity not in IDENTITY_MODES:
        raise SgsimError(f"identity must be one of {', '.join(IDENTITY_MODES)}, got {identity!r}")
    tasks = plan(find_runs(roots), guide, identity)
    networks = Networks(torch.device(device), identity_weights if identity != "off" else None, lpips_weights)
    with tqdm(total=len(tasks), desc="evaluate", unit="image", disable=not progress) as bar:
        rows = measure(tasks, networks, neutral_text, progress=bar.update)
    return EditReport(rows, summarise(rows), networks.missing)


def write_edit_report(folder: Path, report: EditReport) -> list[str]:
    """report.md, edits.csv (one row per image), summary.csv, report.json and tradeoff.png in `folder`."""
    from sgsim.outputs import write_csv, write_json, write_text

    def plain(rows: Sequence[dict]) -> list[dict]:  # JSON has no NaN: a metric that does not apply is null
        return [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()} for row in rows]

    write_text(folder / "report.md", "# Edits measured\n\n" + __doc__.split("\n\n", 1)[1].strip() + "\n\n" +
               markdown(report.summary, report.missing))
    def columns(rows: Sequence[dict]) -> list[str]:  # a world run's rows carry the judge's columns, other runs' do not
        return list(dict.fromkeys(key for row in rows for key in row))

    write_csv(folder / "edits.csv", report.rows, columns(report.rows))
    write_csv(folder / "summary.csv", report.summary, columns(report.summary))
    write_json(folder / "report.json", {"summary": plain(report.summary), "edits": plain(report.rows), "missing": report.missing})
    plot(report.rows, report.summary, folder / "tradeoff.png")
    return ["report.md", "edits.csv", "summary.csv", "report.json", "tradeoff.png"]
