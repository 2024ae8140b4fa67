"""EditSettings: one declaration of every edit setting, which every command's options, the batch resume record and
run.json are built from."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest

from sgsim.cli import main
from sgsim.errors import SgsimError
from sgsim.settings import GROUPS, SETTINGS, EditSettings, bounds_of, default_of, settings_in, settings_record

EDIT_COMMANDS = ("edit", "batch", "video", "direction", "invert", "generate", "demo", "apply")


def options_of(command: str) -> dict[str, click.Option]:
    return {param.name: param for param in main.commands[command].params if isinstance(param, click.Option)}


def test_every_setting_is_in_one_group_and_has_a_help_line():
    assert set(settings_in(*GROUPS)) == set(SETTINGS)
    assert all(field.metadata["help"] for field in SETTINGS.values())


@pytest.mark.parametrize("name", ["generator", "encoder", "invert_steps", "precision", "lr", "lambda_id", "refine_steps", "align"])
def test_a_setting_reads_the_same_in_every_command_that_takes_it(name):
    declared = [(command, options_of(command)[name]) for command in EDIT_COMMANDS if name in options_of(command)]
    assert len(declared) >= 2, name
    for command, option in declared:
        if (command, name) == ("apply", "generator"):  # apply defaults to the generator a direction was learned on
            continue
        assert option.help == SETTINGS[name].metadata["help"], (command, name)
        assert option.default == default_of(name), (command, name)
        if isinstance(option.type, (click.IntRange, click.FloatRange)):
            assert (option.type.min, option.type.max) == bounds_of(name), (command, name)


def test_video_precision_says_what_the_code_picks():
    assert options_of("video")["precision"].help == options_of("edit")["precision"].help
    assert "bf16 on a CPU with AVX512-BF16 or AMX" in options_of("video")["precision"].help


def test_the_record_is_json_and_keeps_the_keys_batch_resume_compares():
    settings = EditSettings(encoder_checkpoint=Path("enc.pth"), strengths=[0.5, 1], loss_weights={"latent": 0.01})
    record = settings_record(settings, leave_out=("strengths",))
    assert json.loads(json.dumps(record)) == record and record["encoder_checkpoint"] == "enc.pth"
    assert set(record) == {"invert_steps", "refine_steps", "align", "inversion_method", "photo_encoder", "generator", "encoder", "encoder_checkpoint", "clip_weights",
                           "preset", "steps", "lr", "lambda_latent", "lambda_id", "loss_weights", "mix", "loudness_strength",
                           "save_video", "precision",  # what `sgsim batch` recorded as batch_settings before EditSettings
                           "world", "free", "truncation", "adaptive_layer_masking", "work_resolution"}
    assert settings_record(settings)["strengths"] == [0.5, 1.0]


def test_a_work_resolution_is_kept_as_text_and_checked():
    assert EditSettings(work_resolution=256).work_resolution == "256"
    assert EditSettings(work_resolution=" Full ").work_resolution == "full"
    with pytest.raises(SgsimError, match="not auto, full or a number of pixels"):
        EditSettings(work_resolution="half")


def test_changes_are_checked_by_name_and_strengths_by_value():
    assert EditSettings().updated(weights={"id": 0}).loss_weights == {"id": 0}
    with pytest.raises(TypeError, match="unknown edit setting 'stepz'"):
        EditSettings().updated(stepz=3)
    with pytest.raises(SgsimError, match="strengths must be one or more numbers from -100 to 100"):
        EditSettings(strengths=[float("nan")])
