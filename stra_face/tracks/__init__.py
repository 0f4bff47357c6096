"""Faces over time: video files and live streams as tracks of people (`stra-face video`, `sf.video`, POST /v1/video)."""
