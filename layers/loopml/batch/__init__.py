"""Batch scoring: CSV / JSON Lines files under ``batch/input/`` scored by the champion into ``batch/output/``."""
