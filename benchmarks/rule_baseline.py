"""Rule-based lip-sync baseline: OpenFaceFX's ARKit JawOpen curve from speech, with no learnt mouth model.

OpenFaceFX (PyPI ``openfacefx``, MIT; written against 0.24.0) turns timed phonemes into blendshape curves with
rule tables only. The learnt parts here only say which words were said and when each phoneme sounds:

1. Text: faster-whisper tiny.en (the project's model) transcribes the audio.
2. Phoneme times: PocketSphinx 5 (PyPI ``pocketsphinx``, its bundled en-us acoustic model and CMU dictionary)
   force-aligns that text to the audio, phone by phone; words missing from its dictionary get OpenFaceFX's
   letter-rule pronunciation. This stands in for the Montreal Forced Aligner that OpenFaceFX calls its accurate
   path; ``from_phone_timestamps`` (OpenFaceFX's adapter for acoustic phone timings) reads the result. Should
   PocketSphinx fail to align, OpenFaceFX's own route for Whisper word times is taken instead:
   ``from_whisper_json`` + ``anchored_segments`` (the CMU dictionary's phonemes spread over each word's span by
   duration priors).
3. OpenFaceFX's tables: ``generate_from_alignment`` maps phonemes to the 15 Oculus visemes, blends them by
   Cohen-Massaro dominance coarticulation (default parameters) and thins the curves into keyframes; ``retarget``
   with the ``arkit`` preset (weighted viseme-to-blendshape table) gives ``jawOpen``, read at the video frames by
   linear interpolation between its keys.

``AVAILABLE`` is False when openfacefx or pocketsphinx is missing. Nothing is downloaded at run time.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.audio.whisper import whisper_model  # noqa: E402
from core.jobs import CancelToken  # noqa: E402
from core.media import AUDIO_RATE  # noqa: E402

try:
    from openfacefx import G2P, PRESETS, anchored_segments, anchors_transcript, from_phone_timestamps, \
        from_whisper_json, generate_from_alignment, retarget
    from openfacefx.phonemes import SILENCE
    from pocketsphinx import Decoder
    AVAILABLE = True
except ImportError:
    AVAILABLE = False

_tools: tuple | None = None


def _aligner() -> tuple:
    """(PocketSphinx decoder, OpenFaceFX G2P holding the same CMU dictionary), built once."""
    global _tools
    if _tools is None:
        decoder = Decoder(samprate=AUDIO_RATE, bestpath=False, lm=None, loglevel="FATAL")
        g2p = G2P()
        g2p.load_cmudict(decoder.config["dict"])
        _tools = decoder, g2p
    return _tools


def whisper_words(audio: np.ndarray) -> list[dict]:
    """Whisper tiny.en's words that hold a letter or digit, as {word, start, end}, each start at or after the
    previous word's end."""
    segments, _ = whisper_model(None, CancelToken()).transcribe(audio, word_timestamps=True)
    words, end = [], 0.0
    for w in (w for s in segments for w in s.words if any(c.isalnum() for c in w.word)):
        start = max(float(w.start), end)
        end = max(float(w.end), start)
        words.append({"word": w.word, "start": start, "end": end})
    return words


def _decode(decoder, pcm: bytes) -> None:
    """One decoding pass of the whole audio in the decoder's current search."""
    decoder.start_utt()
    decoder.process_raw(pcm, full_utt=True)
    decoder.end_utt()


def sphinx_segments(audio: np.ndarray, words: list[dict]) -> list:
    """OpenFaceFX phoneme segments from PocketSphinx's forced alignment of the words to the audio (RuntimeError
    when it cannot align them)."""
    decoder, g2p = _aligner()
    tokens = [t for t in (re.sub(r"[^a-z']", "", w["word"].lower()) for w in words) if re.search("[a-z]", t)]
    if not tokens:
        raise RuntimeError("no pronounceable words to align")
    for t in tokens:
        if decoder.lookup_word(t) is None:
            decoder.add_word(t, " ".join(re.sub(r"\d", "", p) for p in g2p.word(t)), True)
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
    decoder.set_align_text(" ".join(tokens))
    _decode(decoder, pcm)          # word alignment
    decoder.set_alignment()        # raises RuntimeError when the words could not be aligned
    _decode(decoder, pcm)          # phone alignment within those words
    rate = float(decoder.config["frate"])
    rows = [(p.start / rate, (p.start + p.duration) / rate, SILENCE if w.name.startswith(("<", "[", "+")) else p.name)
            for w in decoder.get_alignment() for p in w]
    return from_phone_timestamps(rows, alphabet="arpabet")


def openfacefx_opening(audio: np.ndarray, n_frames: int, fps: float) -> np.ndarray:
    """float32 [n_frames]: the rule baseline's jaw opening (openfacefx's JawOpen curve, or its best opening proxy) at video frames i/fps, for 16 kHz mono float32 audio."""
    audio = np.asarray(audio, dtype=np.float32)
    words = whisper_words(audio)
    if not words:
        return np.zeros(n_frames, np.float32)   # no speech heard: the mouth stays at rest
    try:
        segments = sphinx_segments(audio, words)
    except RuntimeError:
        anchors = from_whisper_json(json.dumps({"words": words}))
        segments = anchored_segments(anchors_transcript(anchors), len(audio) / AUDIO_RATE, anchors,
                                     g2p=_aligner()[1])
    track = retarget(generate_from_alignment(segments, fps=float(fps)), PRESETS["arkit"])
    jaw = next((c for c in track.channels if c.name == "jawOpen"), None)
    if jaw is None:
        return np.zeros(n_frames, np.float32)
    times = [k.time for k in jaw.keys]
    values = [k.value for k in jaw.keys]
    return np.interp(np.arange(n_frames) / float(fps), times, values).astype(np.float32)
