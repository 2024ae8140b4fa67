"""Audio encoders aligned to CLIP and the CLIP wrapper. Knows nothing of StyleGAN."""

from encoders.clip import ClipModel, load_clip
from encoders.errors import EncoderError

__all__ = ["ClipModel", "EncoderError", "load_clip"]
