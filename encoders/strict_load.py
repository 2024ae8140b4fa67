"""State-dict rules shared by the audio encoders and CLIP: one way to unwrap a file's content, strict loading."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from encoders.errors import EncoderError

# Keys under which training scripts nest a state dict; the released SGSIM, AudioCLIP, Wav2CLIP and CLIP files are flat.
STATE_DICT_CONTAINERS = ("state_dict", "model")


def unwrap_state_dict(content: Any) -> Any:
    """The state dict in what a weights file holds: taken out of a training container, DataParallel's `module.`
    prefix dropped. Anything that is not a dict is returned as it is, for the caller to refuse."""
    if not isinstance(content, dict):
        return content
    for key in STATE_DICT_CONTAINERS:
        if isinstance(content.get(key), dict):
            content = content[key]
            break
    return {key.removeprefix("module.") if isinstance(key, str) else key: value for key, value in content.items()}


def load_strict(module: nn.Module, state_dict: dict[str, torch.Tensor], mismatch: str, advice: str) -> None:
    """Load `state_dict` into `module`, or raise naming what is missing, extra or misshapen.

    `mismatch` opens the message ("FILE is not a NAME checkpoint"), `advice` closes it with what to do.
    """
    own = module.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    wrong_shape = sorted(k for k in set(own) & set(state_dict) if own[k].shape != state_dict[k].shape)
    if missing or unexpected or wrong_shape:
        def first(keys: list[str]) -> str:
            return ", ".join(keys[:3]) + (" ..." if len(keys) > 3 else "")

        raise EncoderError(
            f"{mismatch}: {len(missing)} keys missing ({first(missing)}), {len(unexpected)} unexpected "
            f"({first(unexpected)}), {len(wrong_shape)} of the wrong shape ({first(wrong_shape)}); {advice}"
        )
    module.load_state_dict(state_dict, strict=True)
