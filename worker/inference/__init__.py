"""Inference: label tracks with the promoted model."""
