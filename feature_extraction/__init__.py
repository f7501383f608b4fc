"""Offline batch extractors: corpus utterances → feature stores (text, audio, visual)."""
