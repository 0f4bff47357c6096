"""Verification benchmark (LFW / CFP / .bin, 10-fold) and threshold calibration."""
