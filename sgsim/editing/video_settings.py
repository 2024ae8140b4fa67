"""The defaults and bounds of a sound-driven video (sgsim.editing.video), as plain data: `sgsim video --help` shows
them without loading torch."""

DEFAULT_FPS = 24.0
MAX_FPS = 240.0
DEFAULT_KEYFRAME_EVERY = 0.5  # seconds between keyframes: fast enough for a thunderclap, slow enough to stay cheap
MAX_KEYFRAMES = 1024  # keyframes of one video (embedded and held together): over 8 minutes of sound at the default spacing
# Seconds of audio each keyframe's target is embedded from (scripts/bench_video.py --stability measures how much
# an encoder's embedding of neighbouring windows agrees per window length; README "Sound-driven video").
DEFAULT_WINDOW = 2.0
DEFAULT_SMOOTHNESS = 0.01  # weight of ||w_k - w_k+1||^2, the same order as the latent term's (0.002 - 0.008)
DEFAULT_STEPS = 100
# Keyframes optimised together: a long track holds only this many (and the one before them) in the optimisation.
DEFAULT_KEYFRAME_BATCH = 8
# Steps of each micro-batch after the first: its keyframes start from their neighbour's optimised latent, whose
# target is nearly theirs, so a quarter do. In the shapes world's spoken sequence (15 keyframes, two micro-batches)
# 10 / 25 / 100 warm steps coloured 24.1 / 25.9 / 24.1 % of the word frames, every pause frame at the source, in
# 14.4 / 14.6 / 21.2 s (scripts/bench_world.py --part curves --curve warm_steps --videos 2).
DEFAULT_WARM_STEPS = 25
