"""The speech-to-face model: from speech alone, per video frame, the mouth and jaw blendshapes and the inner-lip
opening, speaker-normalised; learnt from many voices (``../shared/corpus``) and shipped in ``resources/``.

One file per step: ``targets`` (what it predicts), ``frontend`` (Whisper states in fixed blocks, the same offline
and streaming), ``corpus`` (clips tracked and cached, their sync checked), ``model`` (the temporal network, its
file and its hash), ``train`` (speaker-disjoint training and the model card), ``stream`` (chunk by chunk).
"""
