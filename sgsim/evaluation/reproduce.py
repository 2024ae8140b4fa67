"""`sgsim reproduce`: the paper's tables and figures from a job file (examples/reproduce/*.json) that names every
generator, sound, seed and setting: the encoder table beside the paper's numbers, the manipulation figures as
labelled grids, the encoder comparison and the ablations as side-by-side edits measured by `sgsim evaluate`.

Every weights file a job needs is checked before any work, and all missing ones are named at once.

A job may name a world (`"world": "shapes"`, resolved by sgsim.worlds.resolve_world, so $SGSIM_WORLDS applies): its
generator, audio encoder and CLIP are then every variant's networks unless a variant names others, its sounds and
dataset paths are relative to the world's folder instead of the job file, and a table's dataset may be such a path
(a dataset file or folder, e.g. "speech/test.csv") instead of a name given with --dataset.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from sgsim.errors import SgsimError

JOBS_DIR = Path(__file__).resolve().parents[2] / "examples" / "reproduce"  # the repository's job files
EDIT_KEYS = ("steps", "lr", "strengths", "weights", "mix", "precision")  # what a variant may set of Editor.edit
MAX_SEEDS = 256
MAX_VARIANTS = 32


@dataclass(frozen=True)
class Variant:
    """One way of editing in an experiment: the networks and the edit's settings."""

    label: str
    generator: str
    encoder: str = "sgsim-resnet18"
    encoder_checkpoint: Optional[str] = None
    clip: Optional[str] = None
    settings: dict = field(default_factory=dict)  # keyword arguments of Editor.edit, limited to EDIT_KEYS


@dataclass(frozen=True)
class Experiment:
    """A figure, a comparison or an ablation: the same seeds and sounds edited by each variant."""

    name: str
    title: str
    sounds: tuple[Path, ...]
    seeds: tuple[int, ...]
    variants: tuple[Variant, ...]
    world: Optional[str] = None  # the world whose networks it edits, recorded in each edit's run.json


@dataclass(frozen=True)
class EncoderTable:
    """Table 1: compare-encoders on named datasets, with the paper's numbers beside."""

    name: str
    datasets: tuple[str, ...]  # keys the user maps to folders (--dataset esc50=PATH), or paths in `files`
    encoders: tuple[str, ...]
    files: dict = field(default_factory=dict)  # dataset -> its file or folder, for datasets the job gives as paths
    checkpoints: dict = field(default_factory=dict)  # encoder -> its weights file, for a world's encoder


@dataclass(frozen=True)
class ReproduceJob:
    name: str
    path: Path
    experiments: tuple[Experiment, ...]
    tables: tuple[EncoderTable, ...]
    world: Optional[str] = None


def _field(data: dict, key: str, kind, where: str, default=None):
    value = data.get(key, default)
    if not isinstance(value, kind):
        raise SgsimError(f"{where}: '{key}' must be {getattr(kind, '__name__', kind)}, got {type(value).__name__}")
    return value


def _variant(data: object, base: dict, where: str) -> Variant:
    if not isinstance(data, dict):
        raise SgsimError(f"{where} must be an object with a 'label'")
    merged = {"encoder": "sgsim-resnet18", **base, **data, "settings": {**base.get("settings", {}), **data.get("settings", {})}}
    unknown = sorted(set(merged["settings"]) - set(EDIT_KEYS))
    if unknown:
        raise SgsimError(f"{where}: unknown setting {unknown[0]!r}; a variant may set {', '.join(EDIT_KEYS)}")
    text = {k: merged.get(k) for k in ("label", "generator", "encoder", "encoder_checkpoint", "clip")}
    if not all(isinstance(v, str) or (v is None and k in ("encoder_checkpoint", "clip")) for k, v in text.items()):
        raise SgsimError(f"{where}: 'label', 'generator' and 'encoder' must be texts")
    return Variant(text["label"], text["generator"], text["encoder"], text["encoder_checkpoint"],
                   text["clip"], dict(merged["settings"]))


def read_job(path: Path) -> ReproduceJob:
    """A job file, every field checked; sounds are paths relative to the job file."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise SgsimError(f"{path} is not a readable job file ({type(exc).__name__}); pass a JSON job such as "
                         f"examples/reproduce/paper.json") from None
    if not isinstance(data, dict):
        raise SgsimError(f"{path}: a job file is a JSON object with 'experiments' and 'tables'")
    world = data.get("world")
    if world is not None and not isinstance(world, str):
        raise SgsimError(f"{path}: 'world' must be a world's name, such as \"shapes\"")
    files = _world_files(world) if world else None
    base_folder = files.root if files else Path(path).parent  # what sound and dataset paths are relative to
    networks = {"generator": str(files.generator), "encoder": files.encoder_name, "encoder_checkpoint": str(files.encoder),
                "clip": str(files.clip)} if files else {}
    experiments = []
    for n, item in enumerate(_field(data, "experiments", list, str(path), [])):
        where = f"{path}: experiment {n + 1}"
        if not isinstance(item, dict):
            raise SgsimError(f"{where} must be an object")
        name = _field(item, "name", str, where)
        sounds = tuple(base_folder / s for s in _field(item, "sounds", list, where) if isinstance(s, str))
        missing = [str(s) for s in sounds if not s.is_file()]
        if missing:
            raise SgsimError(f"{where}: sound {missing[0]} not found" + (f"; run `sgsim world build {world}`" if world else ""))
        seeds = _field(item, "seeds", list, where)
        if not seeds or len(seeds) > MAX_SEEDS or not all(isinstance(s, int) and 0 <= s < 2**32 for s in seeds):
            raise SgsimError(f"{where}: 'seeds' must be 1 to {MAX_SEEDS} whole numbers from 0 to 2**32-1")
        base = {**networks, **{k: v for k, v in item.items() if k in ("generator", "encoder", "encoder_checkpoint", "clip", "settings")}}
        variants = _field(item, "variants", list, where, [{"label": name}])
        if not variants or len(variants) > MAX_VARIANTS:
            raise SgsimError(f"{where}: 1 to {MAX_VARIANTS} variants")
        experiments.append(Experiment(name, _field(item, "title", str, where, name), sounds, tuple(seeds),
                                      tuple(_variant(v, base, f"{where}, variant {i + 1}") for i, v in enumerate(variants)), world))
    tables = [_table(t, base_folder, files, f"{path}: table") for t in _field(data, "tables", list, str(path), []) if isinstance(t, dict)]
    return ReproduceJob(_field(data, "name", str, str(path), Path(path).stem), Path(path), tuple(experiments), tuple(tables), world)


def _world_files(world: str):
    """The named world's files (resolve_world: one line naming `sgsim world build` when it is not built)."""
    from sgsim.worlds import resolve_world

    return resolve_world(world)


def _table(data: dict, base_folder: Path, world, where: str) -> EncoderTable:
    """An encoder table; a dataset written as a path ("speech/test.csv") is relative to `base_folder` and must exist."""
    datasets = tuple(_field(data, "datasets", list, where))
    encoders = tuple(_field(data, "encoders", list, where))
    if not all(isinstance(d, str) for d in datasets) or not all(isinstance(e, str) for e in encoders):
        raise SgsimError(f"{where}: 'datasets' and 'encoders' must be lists of texts")
    files = {d: base_folder / d for d in datasets if "/" in d or Path(d).suffix}
    missing = [str(f) for f in files.values() if not f.exists()]
    if missing:
        raise SgsimError(f"{where}: dataset {missing[0]} not found" + (f"; run `sgsim world build {world.name}`" if world else ""))
    checkpoints = {world.encoder_name: world.encoder} if world and world.encoder_name in encoders else {}
    return EncoderTable(_field(data, "name", str, where), datasets, encoders, files, checkpoints)


def job_path(name_or_path: str) -> Path:
    """'paper', 'world-shapes' (a job of the repository) or a job file's path."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    bundled = JOBS_DIR / f"{name_or_path}.json"
    if bundled.is_file():
        return bundled
    known = ", ".join(sorted(p.stem for p in JOBS_DIR.glob("*.json")))
    raise SgsimError(f"no reproduce job {name_or_path!r}; choose one of {known} or pass a job file")


def needed_weights(job: ReproduceJob, identity: bool = True) -> list[str]:
    """Every weights file the job loads (manifest names or paths), each once, in order of first use."""
    from encoders.registry import registered

    from sgsim.editing.presets import generator_kind

    names: list[str] = []
    for experiment in job.experiments:
        for variant in experiment.variants:
            info = registered(variant.encoder)
            needed = [variant.generator, variant.encoder_checkpoint or info.weights, variant.clip or info.clip_weights]
            weights = variant.settings.get("weights", {})
            if identity and generator_kind(variant.generator).face and weights.get("id", 1) > 0:
                needed.append("arcface-ir-se50")
            names += [n for n in needed if n and n not in names]
    for table in job.tables:
        for encoder in table.encoders:
            info = registered(encoder)
            names += [n for n in (info.weights, info.clip_weights) if n and n not in names]
    return names


def check_ready(job: ReproduceJob, datasets: dict[str, Path]) -> None:
    """Refuse, before any work, a job whose weights or datasets are missing: every missing one named at once."""
    from checkpoints import resolve_all

    absent = sorted({d for table in job.tables for d in table.datasets if d not in table.files} - set(datasets))
    if absent:
        raise SgsimError(f"the job's tables need the datasets {', '.join(absent)}: pass --dataset {absent[0]}=FOLDER for each "
                         f"(ESC-50 and UrbanSound8K as downloaded), or --skip-tables")
    resolve_all(needed_weights(job))


def run_experiment(experiment: Experiment, out: Path, device, say: Callable[[str], None], steps: Optional[int] = None) -> dict:
    """Edit every seed toward every sound with each variant into out/<variant>/seedNNNN/, then the labelled grid
    (a row per seed and sound: the source, then each variant at strength 1) and the measured table."""
    from sgsim.editing import Editor
    from sgsim.editing.folder import write_edit_folder
    from sgsim.evaluation.edits import evaluate_edits, markdown, write_edit_report
    from sgsim.outputs import GridRow, run_record, safe_stem, tile_size, unique, write_grid_rows

    labels = unique(safe_stem(v.label, "variant") for v in experiment.variants)
    results: dict[str, list] = {}
    for label, variant in zip(labels, experiment.variants):
        say(f"{experiment.name}: {variant.label} ({variant.generator}, guided by {variant.encoder})")
        editor = Editor.from_pretrained(variant.generator, variant.encoder, encoder_checkpoint=variant.encoder_checkpoint,
                                        clip=variant.clip, device=device)
        settings = {**variant.settings, **({"steps": steps} if steps else {})}
        results[label] = []
        for seed in experiment.seeds:
            result = editor.edit(seed, [str(s) for s in experiment.sounds], **settings)
            write_edit_folder(out / label / f"seed{seed:04d}", result,
                              run=run_record("edit", [], source={"seed": seed}, generator=variant.generator,
                                             encoder=variant.encoder, encoder_checkpoint=variant.encoder_checkpoint,
                                             clip=variant.clip, variant=variant.label, weights=_weights(editor),
                                             **({"world": experiment.world} if experiment.world else {})))
            results[label].append(result)
    rows = []
    first = results[labels[0]]
    for index, seed in enumerate(experiment.seeds):
        for t, sound in enumerate(experiment.sounds):
            tiles = [first[index].source_image] + [results[label][index].images[t, -1] for label in labels]
            rows.append(GridRow(tiles, ["source", *(v.label for v in experiment.variants)], f"seed {seed} · {sound.stem}"))
    write_grid_rows(out / "grid.png", rows, tile_size(first[0].source_image.shape[-2]))
    tables = {}
    for label, variant in zip(labels, experiment.variants):
        report = evaluate_edits([out / label], device=device, progress=False)
        write_edit_report(out / label / "measured", report)
        tables[variant.label] = markdown(report.summary, report.missing)
    return tables


def _weights(editor) -> dict:
    from sgsim.outputs import weights_record

    return weights_record(editor.weight_files) if getattr(editor, "weight_files", None) else {}


def run_table(table: EncoderTable, datasets: dict[str, Path], out: Path, device) -> str:
    """compare-encoders over the table's datasets and encoders, with the paper's numbers beside ours."""
    from sgsim.datasets import open_dataset
    from sgsim.evaluation.compare import EncoderChoice, compare_encoders
    from sgsim.evaluation.report import markdown, write_reports

    comparison = compare_encoders([EncoderChoice(name, table.checkpoints.get(name), label=name) for name in table.encoders],
                                  [open_dataset(table.files.get(d) or datasets[d]) for d in table.datasets], "sound", True, None, str(device))
    write_reports(comparison, out, with_paper=True)
    return markdown(comparison, with_paper=True)
