"""Ingest: PyAV sources, 1 fps sampling scaled in the decoder, token-budget segmenting."""
