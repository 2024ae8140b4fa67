"""Audio encoders aligned to CLIP and the CLIP wrapper. Knows nothing of StyleGAN."""

from encoders.base import AudioEncoder
from encoders.clip import ClipModel, load_clip
from encoders.errors import EncoderError
from encoders.registry import EncoderInfo, available, load_audio_encoder, load_clip_for

__all__ = ["AudioEncoder", "ClipModel", "EncoderError", "EncoderInfo", "available", "load_audio_encoder", "load_clip", "load_clip_for"]
