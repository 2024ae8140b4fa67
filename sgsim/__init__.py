"""sgsim: sound-guided semantic image manipulation with StyleGAN2 and CLIP."""

__version__ = "0.1.0"

# The editing API loads torch and the networks; exported lazily so `import sgsim.audio` stays light.
_EDITING_EXPORTS = ("Editor", "EditResult", "Target")


def __getattr__(name: str):
    if name in _EDITING_EXPORTS:
        import sgsim.editing

        return getattr(sgsim.editing, name)
    raise AttributeError(f"module 'sgsim' has no attribute {name!r}")
