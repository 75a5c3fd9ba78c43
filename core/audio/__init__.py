"""Audio features: log-mel, the audio-visual encoder, Whisper features, streaming."""
