"""Errors of the audio encoders and the CLIP wrapper."""


class EncoderError(Exception):
    """An encoder name, checkpoint or input is wrong."""
