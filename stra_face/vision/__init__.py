"""Shared image pipeline: decode, detect, align, model-input normalisation."""
