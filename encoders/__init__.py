"""Audio encoders aligned to CLIP and the CLIP wrapper. Knows nothing of StyleGAN."""

from encoders.errors import EncoderError

__all__ = ["EncoderError"]
