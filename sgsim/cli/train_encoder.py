"""`sgsim train-encoder`: train sgsim-resnet18 / sgsim-resnet50 into a frozen CLIP space, resumable."""

from __future__ import annotations

import os
from pathlib import Path

import click

from sgsim.cli.options import command_line
from sgsim.training.config import TrainConfig

DEFAULTS = TrainConfig()


def _front_end(values: tuple[str, ...]) -> dict[str, int]:
    """`KEY=INT` items into LogMelFrontEnd overrides."""
    overrides = {}
    for value in values:
        key, _, number = value.partition("=")
        try:
            overrides[key] = int(number)
        except ValueError:
            raise click.UsageError(f"--front-end {value!r}: expected KEY=INTEGER, e.g. frames=44") from None
    return overrides


@click.command("train-encoder")
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option("--vggsound", is_flag=True, help="DATASET is VGGSound's vggsound.csv (no header) over extracted clips.")
@click.option("--audio-dir", type=click.Path(path_type=Path), default=None, help="VGGSound clips folder (default: audio/ beside the CSV).")
@click.option("--frame-dir", type=click.Path(path_type=Path), default=None, help="VGGSound video frames, one per clip (enables the audio-image loss).")
@click.option("--val-fold", type=int, default=None, help="Fold held out for validation (default: VGGSound's test split, else the last fold).")
@click.option("--encoder", type=click.Choice(["sgsim-resnet18", "sgsim-resnet50"]), default=DEFAULTS.encoder, show_default=True)
@click.option("--clip-model", default=None, help="open_clip model of the target space (default: the encoder's, ViT-B-32-quickgelu).")
@click.option("--clip", "clip_weights", default=None, help="CLIP weights path or manifest name (default: the encoder's, clip-vit-b-32).")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Run folder: last.pt, best.pth, encoder.pth, run.json; an existing last.pt is resumed.")
@click.option("--epochs", type=click.IntRange(min=1), default=DEFAULTS.epochs, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=DEFAULTS.batch_size, show_default=True,
              help="Clips per process and step; under torchrun the global batch is this x the number of processes.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=DEFAULTS.lr, show_default=True, help="Peak of the cyclic learning rate.")
@click.option("--lr-min", type=click.FloatRange(min=0), default=DEFAULTS.lr_min, show_default=True, help="Low end of the cyclic learning rate.")
@click.option("--cycle-epochs", type=click.FloatRange(min=0, min_open=True), default=DEFAULTS.cycle_epochs, show_default=True)
@click.option("--momentum", type=click.FloatRange(min=0, max=1), default=DEFAULTS.momentum, show_default=True)
@click.option("--weight-decay", type=click.FloatRange(min=0), default=DEFAULTS.weight_decay, show_default=True)
@click.option("--temperature", type=click.FloatRange(min=0, min_open=True), default=DEFAULTS.temperature, show_default=True, help="Initial softmax temperature.")
@click.option("--fixed-temperature", is_flag=True, help="Keep the temperature fixed instead of learning it.")
@click.option("--self-supervision/--no-self-supervision", default=True, show_default=True, help="The audio <-> SpecAugmented audio loss.")
@click.option("--text-cosine", type=click.FloatRange(min=0), default=DEFAULTS.text_cosine, show_default=True,
              help="Weight of 1 - cos(clip, its label's text), which makes each embedding point at its text; 0 is the published loss.")
@click.option("--text-augment", type=click.FloatRange(min=0, max=1), default=DEFAULTS.text_augment, show_default=True, help="Probability of augmenting a label.")
@click.option("--prompt", default=DEFAULTS.prompt, show_default=True, help="Template a label is put in, e.g. 'the sound of {}'.")
@click.option("--seed", type=int, default=DEFAULTS.seed, show_default=True)
@click.option("--checkpoint-every", type=click.IntRange(min=1), default=DEFAULTS.checkpoint_every, show_default=True, help="Steps between resumable checkpoints.")
@click.option("--workers", type=click.IntRange(min=0), default=min(4, os.cpu_count() or 1), show_default=True, help="Audio decoding processes.")
@click.option("--device", default=None, help="torch device (default: cuda if available, else cpu; under torchrun cuda:LOCAL_RANK).")
@click.option("--amp/--no-amp", default=True, show_default=True, help="bfloat16 mixed precision on a GPU.")
@click.option("--front-end", "front_end", multiple=True, help="LogMelFrontEnd override KEY=INT (small inputs for experiments; the result then needs the same preprocessing).")
def train_encoder_command(dataset, vggsound, audio_dir, frame_dir, val_fold, encoder, clip_model, clip_weights, out, epochs, batch_size,
                          lr, lr_min, cycle_epochs, momentum, weight_decay, temperature, fixed_temperature, self_supervision,
                          text_cosine, text_augment, prompt, seed, checkpoint_every, workers, device, amp, front_end) -> None:
    """Train an SGSIM audio encoder on labelled audio (ESC-50, UrbanSound8K, VGGSound, a CSV or class folders).

    Under `torchrun --nproc_per_node N` it trains with DistributedDataParallel on N processes (one device each),
    as one process with a batch N times larger would; rank 0 writes the checkpoints.
    """
    from sgsim.datasets import open_dataset, read_vggsound
    from sgsim.distributed import current_rank, process_group, rank_device

    if "{}" not in prompt:
        raise click.UsageError(f"--prompt {prompt!r} must contain {{}} where the label goes")
    rank = current_rank()
    device = rank_device(rank, device)  # a bad --device fails before the data and networks load
    if rank.world_size * batch_size < 2:
        raise click.UsageError("--batch-size 1 in one process: a contrastive loss needs at least 2 clips per step")
    config = TrainConfig(
        encoder=encoder, epochs=epochs, batch_size=batch_size * rank.world_size, lr=lr, lr_min=lr_min, cycle_epochs=cycle_epochs,
        momentum=momentum, weight_decay=weight_decay, temperature=temperature, learn_temperature=not fixed_temperature,
        audio_weight=DEFAULTS.audio_weight if self_supervision else 0.0, text_cosine=text_cosine, text_augment=text_augment,
        prompt=prompt, seed=seed, checkpoint_every=checkpoint_every, workers=workers, amp=amp, front_end=_front_end(front_end),
    )
    data = read_vggsound(dataset, audio_dir, frame_dir) if vggsound else open_dataset(dataset)
    with process_group(device) as rank:
        _train(rank, device, config, data, val_fold, clip_weights, clip_model, out)


def _train(rank, device, config: TrainConfig, data, val_fold, clip_weights, clip_model, out: Path) -> None:
    """Train in this process (one of torchrun's, or alone); rank 0 reports."""
    from tqdm import tqdm

    from encoders import load_clip_for
    from sgsim.training.trainer import BEST_FILE, FINAL_FILE, EncoderTrainer, train_val_split

    say = click.echo if rank.is_main else (lambda *args, **kwargs: None)
    for problem in data.problems:
        say(f"leaving out {problem.path}: {problem.reason}", err=True)
    train, val = train_val_split(data, val_fold)
    clip = load_clip_for(config.encoder, clip_weights, str(device), clip_model=clip_model)
    trainer = EncoderTrainer(config, train, clip, out, val, device, rank, argv=command_line())
    resumed = trainer.resume()
    total = config.epochs * trainer.steps_per_epoch
    if resumed and trainer.step >= total and (out / FINAL_FILE).is_file():
        say(f"{out} is complete: all {total} steps are trained and the encoder is {out / FINAL_FILE}; "
            f"raise --epochs to train on, or pick another --out to start afresh")
        return
    processes = f", {rank.world_size} processes x {trainer.share} clips = a global batch of {config.batch_size}" if rank.distributed else ""
    say(
        f"{'resuming at step ' + str(trainer.step) if resumed else 'training'}: {len(train.clips)} clips, "
        f"{len(val.clips)} for validation, {len(train.classes)} classes, {total} steps{processes}"
    )
    with tqdm(total=total, initial=trainer.step, desc=config.encoder, unit="step", disable=not rank.is_main) as bar:
        def on_step(step: int, losses: dict[str, float]) -> None:
            bar.set_postfix({name: f"{value:.3f}" for name, value in losses.items()}, refresh=False)
            bar.update(1)

        result = trainer.run(progress=on_step)
    for entry in result.history:
        if entry["val_top1"] is not None:
            say(f"epoch {entry['epoch']}: validation zero-shot top-1 {entry['val_top1']:.1f} %")
    best = f"; best validation top-1 {result.best_accuracy:.1f} % in {out / BEST_FILE}" if result.best_accuracy is not None else ""
    say(f"wrote {out / FINAL_FILE}{best}")
