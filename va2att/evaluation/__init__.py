"""Scoring a trained model: flip-averaged predictions on a whole split and their metrics
(`evaluate`), per-video scores of video layouts (`per_video`) and the figures (`plots`).
"""
