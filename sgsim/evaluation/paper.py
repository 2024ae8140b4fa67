"""The published numbers of the SGSIM paper (Lee et al., CVPR 2022, Table 1; docs/reference.md#paper-numbers), as data.

Top-1 accuracy in percent, per dataset, keyed like our own results so they can be shown side by side.
"""

from __future__ import annotations

PAPER_SOURCE = "Lee et al., CVPR 2022 (SGSIM), Table 1"

# (method, protocol) -> {dataset name: top-1 %}
PAPER_RESULTS: dict[tuple[str, str], dict[str, float]] = {
    ("ResNet50", "supervised"): {"esc50": 66.8, "urbansound8k": 71.3},
    ("SGSIM", "linear-probe"): {"esc50": 72.2, "urbansound8k": 66.8},
    ("SGSIM w/o self-supervision", "linear-probe"): {"esc50": 58.7, "urbansound8k": 63.3},
    ("Wav2CLIP", "zero-shot"): {"esc50": 41.4, "urbansound8k": 40.4},
    ("AudioCLIP", "zero-shot"): {"esc50": 69.4, "urbansound8k": 68.8},
    ("SGSIM w/o self-supervision", "zero-shot"): {"esc50": 49.4, "urbansound8k": 45.6},
    ("SGSIM", "zero-shot"): {"esc50": 57.8, "urbansound8k": 45.7},
}

# Our registry names -> the paper's method names, to put the paper's bar beside the matching own bar.
PAPER_METHODS: dict[str, str] = {
    "sgsim-resnet18": "SGSIM",
    "sgsim-resnet50": "SGSIM",
    "wav2clip": "Wav2CLIP",
    "audioclip-partial": "AudioCLIP",
    "audioclip-full": "AudioCLIP",
    "resnet50-supervised": "ResNet50",
}

# The full datasets the paper's numbers were measured on (a comparison on a subset says so beside them).
PAPER_DATASETS: dict[str, str] = {"esc50": "full ESC-50 (2000 clips, 5 folds)", "urbansound8k": "full UrbanSound8K (8732 clips, 10 folds)"}
