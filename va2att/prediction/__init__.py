"""Valence, arousal and expression of the faces in your own photos and videos: `Predictor`
(`predictor`) and pictures annotated with its results (`annotate`).
"""
