"""Evaluation of audio encoders: embeddings with an on-disk cache, zero-shot and linear-probe accuracy per fold, reports."""
