"""The shapes world's numbers, measured with its judge: `python scripts/bench_world.py [--world-dir DIR] [--part ...]`.

Parts (default: networks, edits, video):
- networks: generator cleanliness and balance over 1000 seeds, CLIP zero-shot colour and shape on 1200 held-out
  renders, the audio encoder's zero-shot accuracy over the seven words on held-out voices (DIR/speech/test.csv);
- edits: each check of sgsim.worlds.checks (sound, text, sound + text, learned direction) on 50 seeds each, with the
  world's default settings, and how many edits the world's CLIP reads zero-shot as reaching the aim;
- video: sgsim video on the spoken sequence "red ... blue ... green" from a few seeds, judged frame by frame;
- curves: success and keep rates against steps, latent weight, learning rate, adaptive layer masking (off / on),
  the truncation of the source seeds (each value its own sources), direction strength, video window and video warm
  steps (what chose the world's defaults), steps auto against the default 300 (with the mean steps the edits ran and
  the time ratio) and the 16 px work resolution against full size, each point timed, written as JSON and a PNG with
  --out;
- rules: colour edits by sound as each candidate flattening rule of steps auto would stop them (success, keep rates,
  mean steps), all read from one 300-step run (what chose AUTO_RULE's constants); then AUTO_RULE and each change of
  COOLED_RULES (another cooldown, an earlier earliest stop), each its own timed run.
Prints a table per part with the issue's targets beside what the world reaches.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

PARTS = ("networks", "edits", "video", "curves", "rules")
# Candidate flattening rules of steps auto (sgsim.editing.stopping.FlatteningRule): window, min_improvement, min_steps.
RULES = [(window, improvement, least) for window in (20, 40, 60, 80) for improvement in (0.0005, 0.002)
         for least in (60, 100, 150) if window < least]
CURVES = {
    "steps": [25, 50, 100, 200, 300],
    "lambda_latent": [0.0, 0.0003, 0.001, 0.002, 0.008],
    "lr": [0.03, 0.1, 0.3],
    "adaptive_layer_masking": [False, True],
    "truncation": [0.5, 0.7, 1.0],  # of the source seeds' latents (sgsim edit --seed's psi); each value its own sources
    "strength": [0.5, 1.0, 1.5, 2.0],
    "window": [0.5, 1.0, 2.0],
    "warm_steps": [10, 25, 100],
    "auto_steps": [300, "auto"],  # steps auto (sgsim.editing.stopping.AUTO_RULE) against the default it caps at
    "work_resolution": ["full", 16],  # optimising at the 16 px block's image (CLIP sees it upsampled) against full size
}
CATEGORICAL = ("auto_steps", "work_resolution")  # curves whose values are labels, not a scale
# AUTO_RULE and changes to it the rules part runs: other cooldowns (steps cooling a flattened edit's learning rate to
# zero) and an earlier earliest stop (min_steps), each with AUTO_RULE's other constants.
COOLED_RULES = ({}, {"cooldown": 25}, {"cooldown": 75}, {"min_steps": 100})


def table(rows: list[tuple[str, str, str]]) -> None:
    width = max(len(row[0]) for row in rows)
    print(f"{'measure':<{width}}  {'target':<9}  reached")
    for name, target, reached in rows:
        print(f"{name:<{width}}  {target:<9}  {reached}")
    print()


def percent(value: float | None) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.1f} %"


def networks(files, seeds: int, renders: int) -> dict:
    from encoders.clip import load_clip
    from encoders.registry import load_audio_encoder
    from sgsim.datasets import open_dataset
    from sgsim.worlds.metrics import clip_zero_shot, encoder_zero_shot, generator_metrics
    from stylegan2 import load_generator

    clip = load_clip(files.clip_model, pretrained=files.clip)
    generator = generator_metrics(load_generator(files.generator), seeds)
    zero_shot = clip_zero_shot(clip, renders)
    speech = files.root / "speech" / "test.csv"
    words = None
    if speech.is_file():
        encoder = load_audio_encoder(files.encoder_name, checkpoint=files.encoder)
        words = encoder_zero_shot(encoder, clip, open_dataset(speech))
    table([
        ("generator: judged clean", ">= 95 %", percent(generator["clean"])),
        ("generator: combinations present", "12 of 12", f"{generator['combinations_present']} of 12"),
        ("generator: largest combination share / fair", "<= 2", f"{generator['largest_share_over_fair']:.2f}"),
        ("CLIP zero-shot colour", ">= 98 %", percent(zero_shot["colour"])),
        ("CLIP zero-shot shape", ">= 95 %", percent(zero_shot["shape"])),
        (f"audio encoder zero-shot, held-out voices ({words['clips'] if words else 0} clips)", ">= 90 %",
         percent(words["top1"]) if words else f"n/a (no {speech})"),
    ])
    return {"generator": generator, "clip_zero_shot": zero_shot, "encoder_zero_shot": words}


def edits(editor, audio: Path, count: int, settings) -> dict:
    from sgsim.worlds.checks import GOALS, kept_rate, run_checks

    results = run_checks(editor, audio, count, settings)
    rows = []
    for name, result in results.items():
        goal = GOALS[name]
        unavailable = f"; no sources for {', '.join(result['no_sources'])}" if result.get("no_sources") else ""
        target = f">= {100 * goal.reached:.0f} %" if goal.reached is not None else ""
        rows.append((f"{name}: reached ({result['count']} edits{unavailable})", target, percent(result.get("reached"))))
        if "clip_reached" in result:
            rows.append((f"{name}: reached in the edit's own CLIP's eyes", "", percent(result["clip_reached"])))
        if goal.kept is not None:
            rows.append((f"{name}: kept the other attribute", f">= {100 * goal.kept:.0f} %", percent(kept_rate(result))))
        rows.append((f"{name}: kept the position (<= 3 px)", "", percent(result.get("kept_position"))))
    table(rows)
    return results


def video(editor, audio: Path, seeds: list[int], window: float) -> dict:
    from sgsim.worlds.checks import video_check

    result = video_check(editor, audio, seeds, window)
    table([(f"video: word frames in the word's colour ({len(seeds)} videos)", ">= 80 %", percent(result["word_frames_coloured"])),
           ("video: pause frames at the source", "all", percent(result["pause_frames_at_source"]))])
    return result


def curves(editor, audio: Path, count: int, settings, seeds: list[int], names: list[str], window: float) -> dict:
    """Rates as one setting varies from the defaults: steps, latent weight, learning rate and adaptive layer masking on
    colour words by sound, strength on learned colour directions, window and warm steps on the video of the spoken
    sequence (warm steps at the world's `window`); each point with its seconds."""
    from sgsim.worlds.checks import colour_directions, direction_check, kept_rate, run_checks, video_check

    colour = "colour word (sound)"
    learned: dict = {}

    def edit_point(name: str, value: float) -> dict:
        return run_checks(editor, audio, count, settings.updated(**{name: value}), names=[colour])[colour]

    def strength_point(value: float) -> dict:
        if not learned:
            learned.update(colour_directions(editor, audio, settings))
        return direction_check(editor, learned, count, value)

    points = {**{name: (lambda v, name=name: edit_point(name, v)) for name in ("steps", "lambda_latent", "lr", "adaptive_layer_masking", "truncation")},
              "auto_steps": lambda v: edit_point("steps", v), "work_resolution": lambda v: edit_point("work_resolution", v),
              "strength": strength_point, "window": lambda v: video_check(editor, audio, seeds, v),
              "warm_steps": lambda v: video_check(editor, audio, seeds, window, warm_steps=v)}
    measured: dict[str, list[dict]] = {}
    for name in names:
        measured[name] = []
        for value in CURVES[name]:
            started = time.perf_counter()
            result = points[name](value)
            seconds = time.perf_counter() - started
            if name in ("window", "warm_steps"):
                point = {key: result[key] for key in ("word_frames_coloured", "pause_frames_at_source")}
            else:
                point = {"reached": result["reached"], "kept": kept_rate(result), "kept_position": result["kept_position"],
                         "success": result["success"]}
            steps = {"steps_used": round(result["steps_used"], 1)} if "steps_used" in result else {}
            measured[name].append({"value": value, **point, **steps, "seconds": round(seconds, 1)})
            print(f"{name} = {value}: " + ", ".join(f"{key.replace('_', ' ')} {percent(v)}" for key, v in point.items())
                  + (f", mean steps {steps['steps_used']}" if steps else "") + f" ({seconds:.1f} s)", flush=True)
    if "auto_steps" in measured:
        fixed, auto = measured["auto_steps"]
        print(f"auto / {fixed['value']} steps: {fixed['seconds'] / auto['seconds']:.2f}x faster, mean steps "
              f"{auto['steps_used']} against {fixed['steps_used']}; success {percent(auto['success'])} against "
              f"{percent(fixed['success'])}, kept {percent(auto['kept'])} against {percent(fixed['kept'])}")
    return measured


def rules(editor, audio: Path, count: int, settings) -> list[dict]:
    """Colour edits by sound (the curves' edits) run once for 300 steps, keeping every step's latents; per candidate
    rule of RULES, each edit's latents after the step the rule stops it at (its loss history alone decides, as in an
    auto run, whose steps are the fixed run's), judged: reached, kept shape, kept position, success and mean steps."""
    from dataclasses import replace

    import numpy as np
    import torch

    from sgsim.editing import Target
    from sgsim.editing.stopping import AUTO_RULE
    from sgsim.worlds.checks import EDIT_SEEDS_FROM, WORD_FILE
    from sgsim.worlds.judged import Aim, edit_seeds, judge, score, source_seeds
    from sgsim.worlds.shapes import COLOURS

    shares = [count // len(COLOURS) + (1 if i < count % len(COLOURS) else 0) for i in range(len(COLOURS))]
    jobs = [(Target(audio=audio / WORD_FILE.format(colour)), Aim(colour=colour),
             source_seeds(editor.generator, Aim(colour=colour), share, EDIT_SEEDS_FROM, settings.truncation))
            for colour, share in zip(COLOURS, shares)]
    snapshots: list = []  # the latents each step rendered: snapshots[n] is every edit after n steps
    edited = edit_seeds(editor, [(target, seeds) for target, _, seeds in jobs], settings.updated(steps=AUTO_RULE.max_steps),
                        callback=lambda step, losses, latents: snapshots.append(latents.cpu()))
    finals = torch.cat([after for _, after in edited.pictures])
    sizes = [len(seeds) for _, _, seeds in jobs]
    names = ("reached", "kept_shape", "kept_position", "success")

    def rates(pictures) -> dict[str, float]:
        """The rates over all jobs' edits, given each job's (source, edited) pictures."""
        per = [score(judge(before), judge(after), aim, before.shape[-1])["per_edit"]
               for (before, after), (_, aim, _) in zip(pictures, jobs)]
        return {name: float(np.mean(np.concatenate([p[name] for p in per]))) for name in names}

    def judged(at: np.ndarray) -> dict[str, float]:
        """The rates of the edits whose latents are those after `at` steps (the cap: the fixed run's pictures)."""
        rendered = editor.render(torch.stack([snapshots[min(n, len(snapshots) - 1)][row] for row, n in enumerate(at)]))
        after = torch.where(torch.as_tensor(at >= AUTO_RULE.max_steps)[:, None, None, None], finals, rendered).split(sizes)
        return rates([(before, moved) for (before, _), moved in zip(edited.pictures, after)])

    points = []
    print(f"{'window':>6s} {'improve':>8s} {'min':>4s} {'steps':>6s} " + " ".join(f"{name:>13s}" for name in names)
          + "   (auto's lowest-loss latents / the stop step's own)")
    for window, improvement, least in RULES:
        rule = replace(AUTO_RULE, window=window, min_improvement=improvement, min_steps=least, cooldown=0)  # a plain stop
        stops = np.array([n or rule.max_steps for n in rule.stop_steps(edited.losses)])
        best = np.array([np.argmin(edited.losses[:n, row]) if n < rule.max_steps else n for row, n in enumerate(stops)])
        kept, own = judged(best), judged(stops)
        points.append({"window": window, "min_improvement": improvement, "min_steps": least, "steps_used": float(stops.mean()),
                       "batch_steps": int(stops.max()), **kept, **{f"{name}_at_stop": own[name] for name in names}})
        print(f"{window:6d} {improvement:8.4f} {least:4d} {stops.mean():6.1f} " + " ".join(
            f"{percent(kept[name]):>6s}/{percent(own[name]):>6s}" for name in names), flush=True)
    print("\nAUTO_RULE and changes to it (each its own run: a cooled edit leaves the fixed run's steps once it flattens); the "
          "300-step run: " + ", ".join(f"{name.replace('_', ' ')} {percent(value)}" for name, value in rates(edited.pictures).items()))
    for change in COOLED_RULES:
        rule = replace(AUTO_RULE, **change)
        started = time.perf_counter()
        cooled = edit_seeds(editor, [(target, seeds) for target, _, seeds in jobs], settings, stop=rule,
                            callback=lambda step, losses, latents: None)  # no progress bar
        seconds = time.perf_counter() - started
        cooled_rates, steps = rates(cooled.pictures), np.concatenate(cooled.steps_used)
        points.append({**{key: getattr(rule, key) for key in ("window", "min_improvement", "min_steps", "cooldown")},
                       "steps_used": float(steps.mean()), "batch_steps": int(steps.max()), "seconds": round(seconds, 1), **cooled_rates})
        print(f"min_steps {rule.min_steps}, cooldown {rule.cooldown}: mean steps {steps.mean():.1f} (batch {steps.max()}), {seconds:.1f} s; "
              + ", ".join(f"{name.replace('_', ' ')} {percent(cooled_rates[name])}" for name in names), flush=True)
    return points


def plot(measured: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(measured), figsize=(4 * len(measured), 3.2), squeeze=False)
    for axis, (name, points) in zip(axes[0], measured.items()):
        values = [str(p["value"]) for p in points] if name in CATEGORICAL else [p["value"] for p in points]
        for key in [k for k in points[0] if k not in ("value", "seconds", "steps_used")]:
            axis.plot(values, [p[key] for p in points], marker="o", label=key.replace("_", " "))
        axis.set_xlabel(name.replace("_", " "))
        axis.set_ylim(0, 1.02)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world-dir", type=Path, default=None, help="a built world (default: the bundled examples/worlds/shapes)")
    parser.add_argument("--part", action="append", choices=PARTS, help="what to measure (repeatable; default networks, edits, video)")
    parser.add_argument("--seeds", type=int, default=1000, help="generator seeds judged")
    parser.add_argument("--renders", type=int, default=1200, help="held-out renders for CLIP's zero-shot accuracy")
    parser.add_argument("--edits", type=int, default=50, help="edits per check")
    parser.add_argument("--videos", type=int, default=4, help="videos of the spoken sequence")
    parser.add_argument("--curve", action="append", choices=list(CURVES), help="which curves (repeatable; default all)")
    parser.add_argument("--out", type=Path, default=None, help="folder for results.json (and curves.png)")
    args = parser.parse_args()

    import torch

    from sgsim.editing import Editor
    from sgsim.worlds import resolve_world, world_networks
    from sgsim.settings import EditSettings

    torch.set_grad_enabled(True)
    files = resolve_world("shapes", args.world_dir)
    parts = args.part or ["networks", "edits", "video"]
    results: dict = {}
    if "networks" in parts:
        results["networks"] = networks(files, args.seeds, args.renders)
    if set(parts) - {"networks"}:
        settings = world_networks(EditSettings(world="shapes"), files)
        editor = Editor.from_pretrained(settings.generator, settings.encoder, encoder_checkpoint=settings.encoder_checkpoint,
                                        clip=settings.clip_weights, device="cpu")
        audio = files.audio
        seeds = list(range(10_000, 10_000 + args.videos))
        window = files.video_window()
        if "edits" in parts:
            results["edits"] = edits(editor, audio, args.edits, settings)
        if "video" in parts:
            results["video"] = video(editor, audio, seeds, window)
        if "curves" in parts:
            results["curves"] = curves(editor, audio, args.edits, settings, seeds, args.curve or list(CURVES), window)
        if "rules" in parts:
            results["rules"] = rules(editor, audio, args.edits, settings)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.json").write_text(json.dumps(results, indent=2, default=float))
        if "curves" in results:
            plot(results["curves"], args.out / "curves.png")


if __name__ == "__main__":
    main()
