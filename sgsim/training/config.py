"""The settings of an encoder training run, as plain data: `sgsim train-encoder --help` shows them without loading torch."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TrainConfig:
    """Every setting of a training run; saved in each checkpoint and compared on resume."""

    encoder: str = "sgsim-resnet18"  # registered encoder to train, a TrainableEncoder: sgsim-resnet18 or sgsim-resnet50
    epochs: int = 50  # docs/reference.md#encoder-training
    batch_size: int = 320  # the global batch (all processes together): 320 in the reference code, 384 in the paper
    lr: float = 1e-3  # SGD peak learning rate (paper and code)
    lr_min: float = 1e-4  # low end of the cyclic schedule
    cycle_epochs: float = 2.0  # length of one up-and-down learning-rate cycle, in epochs
    momentum: float = 0.9
    weight_decay: float = 5e-4  # reference code; the paper says 1e-4
    temperature: float = 0.07  # initial (or fixed) softmax temperature: logits * 1/0.07, not * exp(0.07)
    learn_temperature: bool = True
    text_weight: float = 1.0  # audio <-> label text
    text_cosine: float = 0.0  # weight of 1 - cos(clip, its label's text): InfoNCE ranks the texts; this points the clip at its own
    image_weight: float = 1.0  # audio <-> video frame, when the dataset has frames
    audio_weight: float = 1.0  # audio <-> SpecAugmented audio (self-supervision); 0 switches it off
    text_augment: float = 0.5  # probability of one EDA operation on a label
    prompt: str = "{}"  # template the label is put in, for training and validation
    seed: int = 0
    checkpoint_every: int = 500  # steps between resumable checkpoints (one is always written at the end)
    workers: int = 2  # audio decoding processes
    amp: bool = True  # bfloat16 autocast on CUDA (ignored on the CPU)
    front_end: dict = field(default_factory=dict)  # LogMelFrontEnd overrides (small inputs for tests); {} = the released preprocessing
