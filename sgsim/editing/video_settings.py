"""The defaults and bounds of a sound-driven video (sgsim.editing.video), as plain data: `sgsim video --help` shows
them without loading torch."""

DEFAULT_FPS = 24.0
MAX_FPS = 240.0
DEFAULT_KEYFRAME_EVERY = 0.5  # seconds between keyframes: fast enough for a thunderclap, slow enough to stay cheap
MAX_KEYFRAMES = 1024  # keyframes of one video, all optimised in one batch: over 8 minutes of sound at the default spacing
# Seconds of audio each keyframe's target is embedded from (scripts/bench_video.py --stability measures how much
# an encoder's embedding of neighbouring windows agrees per window length; README "Sound-driven video").
DEFAULT_WINDOW = 2.0
DEFAULT_SMOOTHNESS = 0.01  # weight of ||w_k - w_k+1||^2, the same order as the latent term's (0.002 - 0.008)
DEFAULT_STEPS = 100
