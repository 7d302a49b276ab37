"""Valence, arousal and expression of the faces in your own photos and videos: `Predictor`
(`predictor`) and what it gives back (`results`); video frames, their times and smoothing per track
(`video`); where results go as they come (`outputs`: `csv_rows`, `json_results`, `result_files`,
`summary`, `timeline`) and pictures annotated with them (`annotate`).
"""
