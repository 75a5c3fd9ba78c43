"""Whisper tiny.en's encoder in torch (core.speech.encoder): the same output as CTranslate2's from the same file, the
states between its blocks, and a clear refusal of a file that is not a CTranslate2 Whisper model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from faster_whisper.feature_extractor import FeatureExtractor

from core.audio.whisper import whisper_model
from core.errors import AvatarStudioError
from core.jobs import CancelToken
from core.media import load_audio
from core.speech.encoder import OUTPUT, read_ctranslate2, whisper_encoder
from core.speech.frontend import Frontend, FrontendConfig


@pytest.fixture(scope="module")
def mel(media_dir):
    audio = load_audio(media_dir / "speech_radio_8s_16k.wav")[:16000 * 3]
    return FeatureExtractor()(audio, padding=0)[None].astype(np.float32)             # [1,80,300]


def test_the_encoders_output_equals_ctranslate2s(mel):
    ours = whisper_encoder(None, CancelToken())(torch.from_numpy(mel), (OUTPUT,)).numpy()   # [1,150,384]
    theirs = np.asarray(whisper_model(None, CancelToken()).encode(mel), np.float32)
    assert ours.shape == theirs.shape == (1, 150, 384)
    assert np.abs(ours - theirs).max() < 2e-3 * np.abs(theirs).max()


def test_layers_are_the_residual_stream_between_blocks_concatenated_in_order(mel):
    encoder = whisper_encoder(None, CancelToken())
    x = torch.from_numpy(mel)
    both = encoder(x, (2, 3)).numpy()
    assert both.shape == (1, 150, 768)
    assert np.array_equal(both[..., :384], encoder(x, (2,)).numpy())
    assert np.array_equal(both[..., 384:], encoder(x, (3,)).numpy())
    assert not np.allclose(both[..., 384:], encoder(x, (OUTPUT,)).numpy(), atol=1e-2)
    cfg = FrontendConfig(layers=(2, 3))
    assert Frontend(cfg).states(np.zeros(16000, np.float32)).shape == (50, cfg.dim) and cfg.dim == 2 * 384 + 80


def test_a_file_that_is_not_a_ctranslate2_whisper_model_is_refused(tmp_path):
    bad = tmp_path / "model.bin"
    bad.write_bytes(b"PK\x03\x04 not a model at all")
    with pytest.raises(AvatarStudioError, match="not a CTranslate2 Whisper model file"):
        read_ctranslate2(bad)
