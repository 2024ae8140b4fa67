"""sgsim: sound-guided semantic image manipulation with StyleGAN2 and CLIP."""

__version__ = "0.1.0"
