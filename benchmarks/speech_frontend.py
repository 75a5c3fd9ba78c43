"""Speech front-end benchmark: what the speech model's Whisper states cost, beside CTranslate2's encoder, one run.

    .venv/bin/python benchmarks/speech_frontend.py [--seconds 20]

Rows, each on the same speech (speech_en_60s_16k.wav, its first ``--seconds``), as the offline front-end runs it
(100 ms blocks of 5.1 s windows, 32 windows per call, the log-mel included): CTranslate2's encoder output (what the
front-end ran before core.speech.encoder), the torch encoder's output, and the torch encoder's states after blocks
2 and 3 (the shipped model's layers, which stops one block short). Columns: ms per second of speech on 1 and 2
threads (torch's intra-op threads; CTranslate2's ``cpu_threads``), the median of three passes after a warm-up.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from faster_whisper import WhisperModel

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.jobs import CancelToken  # noqa: E402
from core.media import AUDIO_RATE, load_audio  # noqa: E402
from core.models import WHISPER_TINY_EN, resolve_model  # noqa: E402
from core.speech.encoder import OUTPUT  # noqa: E402
from core.speech.frontend import Frontend, FrontendConfig, block_windows, n_states  # noqa: E402

SPEECH = ROOT.parent / "shared" / "media" / "speech_en_60s_16k.wav"


def ms_per_second(run, seconds: float) -> float:
    run()
    times = []
    for _ in range(3):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000 / seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=20.0)
    args = ap.parse_args()
    audio = load_audio(SPEECH)[:int(args.seconds * AUDIO_RATE)]
    seconds = len(audio) / AUDIO_RATE
    model_file = resolve_model(WHISPER_TINY_EN, None, cancel=CancelToken())
    final = Frontend(FrontendConfig(layers=(OUTPUT,)))
    layered = Frontend(FrontendConfig(layers=(2, 3)))
    cfg = final.cfg
    rows: dict[str, dict[int, float]] = {}
    for threads in (1, 2):
        torch.set_num_threads(threads)      # torch's threads are global: the front-ends above run on them
        ct2 = WhisperModel(str(model_file.parent), device="cpu", compute_type="float32", cpu_threads=threads)

        def ctranslate2() -> None:   # the front-end's loop as it was, CTranslate2 encoding each batch
            blocks = -(-n_states(len(audio)) // cfg.block)
            for first in range(0, blocks, cfg.batch):
                windows = block_windows(audio, first, min(cfg.batch, blocks - first), cfg)
                mel = np.stack([ct2.feature_extractor(w, padding=0) for w in windows])
                ct2.encode(mel)

        for name, run in (("CTranslate2, encoder output (before)", ctranslate2),
                          ("torch, encoder output", lambda: final.states(audio)),
                          ("torch, after blocks 2 and 3 (shipped)", lambda: layered.states(audio))):
            rows.setdefault(name, {})[threads] = ms_per_second(run, seconds)
    print(f"{seconds:.0f} s of speech; ms per second of speech, median of 3 passes")
    print("| front-end | 1 thread | 2 threads |\n|---|---|---|")
    for name, cells in rows.items():
        print(f"| {name} | {cells[1]:.0f} | {cells[2]:.0f} |")


if __name__ == "__main__":
    main()
