"""Miniature worlds whose networks are trained by sgsim itself and whose edits a judge that is not CLIP can score."""
