"""Lip-sync benchmark: how well each way of turning speech into a mouth follows real mouths, before any rendering.

Run by hand: ``python benchmarks/lipsync.py [--keep DIR]``. One table from one run. Rows:
- "per-subject readout": today's default before the speech model, log-mel features and the avatar's mouth readout
  fitted on the subject's own training frames (core.avatar.model.AvatarModel.fit_readout).
- "speech model zero-shot": the shipped speech model's lip opening, no fitting to the subject at all.
- "openfacefx rule baseline": phonemes (Whisper's words force-aligned by PocketSphinx) through openfacefx's rule
  tables to ARKit JawOpen (benchmarks/rule_baseline.py); a voice-independent curve, so its cross-voice column is
  katie's own first 200 frames.
- "speech model + calibration": the speech model's outputs read through the avatar's calibration (a ridge from the
  footage's own tracked values of those outputs to its mouths, on the training frames: what training now does),
  after the footage's own sound-to-picture offset is removed (found by the speech model on the training frames, as
  the audio stage does); cross-voice feeds katie's speech aligned the same way to her picture.
Columns: the corpus's speaker-disjoint validation (median over held-out speakers, from the model card: the k-fold
run that made the shipped model); may and katie whole-clip r of the opening (zero-shot: the model never saw them);
may and katie held-out drive r (the last 20%, the opening that drives the avatar's lips against the tracked one);
cross-voice r (May's driver fed katie's speech, against katie's real mouth, 200 frames); the median best lag; and
milliseconds of compute per second of speech. Each r at lag 0 / at the best lag within ±3 frames.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import rule_baseline  # noqa: E402  (benchmarks/rule_baseline.py)

from core.audio.features import MelEncoder, SpeechEncoder  # noqa: E402
from core.audio.mouth import mouth_opening, standardised_mouths  # noqa: E402
from core.avatar.model import AvatarConfig, AvatarModel  # noqa: E402
from core.ingest import IngestJob  # noqa: E402
from core.jobs import run_job  # noqa: E402
from core.layout import AUDIO_FILE  # noqa: E402
from core.media import AUDIO_RATE, load_audio  # noqa: E402
from core.metrics import mouth_sync_r  # noqa: E402
from core.project import Project  # noqa: E402
from core.speech.lipsync import speech_model  # noqa: E402
from core.speech.offset import footage_offset, shifted  # noqa: E402
from core.speech.targets import OPENING, OUTPUTS, tracked_targets  # noqa: E402
from core.split import training_frames  # noqa: E402
from core.tracking.track import TrackJob, load_tracking  # noqa: E402

MEDIA = ROOT.parent / "shared" / "media"
HOLDOUT = 0.2
CROSS_FRAMES = 200


def subject(clip: str, workdir: Path) -> dict:
    """The clip ingested and tracked: its audio, fps, tracked opening and standardised mouths."""
    project = Project.create(workdir / clip)
    run_job(IngestJob(project, MEDIA / f"{clip}.mp4"))
    run_job(TrackJob(project))
    tracking = load_tracking(project)
    landmarks = tracking["landmarks"]
    n = len(landmarks)
    n_train = training_frames(n, HOLDOUT)
    return {"audio": load_audio(project.path(AUDIO_FILE)), "fps": Fraction(project.checked_footage().info["fps"]),
            "opening": mouth_opening(landmarks), "n": n, "n_train": n_train,
            "mouths": standardised_mouths(landmarks, np.arange(n_train)),
            "tracked": tracked_targets(landmarks, tracking["blendshapes"], np.arange(n_train))}


def readout(features: np.ndarray, s: dict) -> AvatarModel:
    """The avatar's mouth readout fitted on the subject's training frames, as training fits it: from log-mel, a
    ridge on the frames' sound; for the speech model, its calibration on the frames' tracked face."""
    model = AvatarModel.empty(1, features.shape[1], AvatarConfig())
    frames = np.arange(s["n_train"])
    if features.shape[1] == len(OUTPUTS):
        model.fit_calibration(s["tracked"], s["mouths"], frames)
    else:
        model.fit_readout(features, s["mouths"], frames, standardise=False)
    return model


def driven(model: AvatarModel, features: np.ndarray, frames: range) -> np.ndarray:
    """The opening (z-score) that drives the lips of each frame: the readout's estimate through the projector."""
    with torch.inference_mode():
        return np.array([model.driven_opening(model.mouth(torch.from_numpy(model.audio_window(features, i))))
                         for i in frames])


def rs(pred: np.ndarray, real: np.ndarray) -> tuple[float, float, int]:
    r0, _ = mouth_sync_r(pred, real, 0)
    r, lag = mouth_sync_r(pred, real, 3)
    return r0, r, lag


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--keep", metavar="DIR", help="make the projects in DIR and leave them there")
    ap.add_argument("--speech-model", metavar="FILE", help="a model from 'speech-model train' (default: shipped)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    workdir = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="lipsync-bench-"))
    may, katie = subject("may_13s", workdir), subject("katie_8s", workdir)
    model_path = Path(args.speech_model) if args.speech_model else None
    card = speech_model(model_path).card["validation"]

    encoders = {"per-subject readout": MelEncoder(), "speech model": SpeechEncoder(model_path)}
    feats, ms = {}, {}
    for name, enc in encoders.items():
        for clip, s in (("may", may), ("katie", katie)):
            t = time.perf_counter()
            feats[name, clip] = enc.features(s["audio"], s["n"], s["fps"])
            ms[name, clip] = (time.perf_counter() - t) * 1000 / (len(s["audio"]) / AUDIO_RATE)
    opening_col = list(speech_model(model_path).net.config.outputs).index(OPENING)

    rows, offsets = [], {}
    for row, enc, calibrated in (("per-subject readout", "per-subject readout", True),
                                 ("speech model zero-shot", "speech model", False),
                                 ("speech model + calibration", "speech model", True)):
        cells, lags = {}, []
        if calibrated and enc == "speech model":   # each footage's own sound offset removed (its training frames)
            for clip, s in (("may", may), ("katie", katie)):
                f = feats[enc, clip]
                lag, _ = footage_offset(f[:s["n_train"], opening_col], s["opening"][:s["n_train"]], 12)
                feats["aligned", clip] = shifted(f, lag)
                offsets[clip] = lag
            enc = "aligned"
        if enc == "speech model" and not calibrated:
            cells["corpus"] = (card["median_speaker_r"], card["median_speaker_r_best_lag"])
        for clip, s in (("may", may), ("katie", katie)):
            f = feats[enc, clip]
            held = range(s["n_train"], s["n"])
            if calibrated:
                est = driven(readout(f, s), f, held)
            else:
                cells[f"{clip} whole"] = rs(f[:, opening_col], s["opening"])[:2]
                lags.append(rs(f[:, opening_col], s["opening"])[2])
                est = f[s["n_train"]:, opening_col]
            r0, r, lag = rs(est, s["opening"][s["n_train"]:])
            cells[f"{clip} held-out"] = (r0, r)
            lags.append(lag)
        # Cross-voice: May's driver (her calibration) fed katie's speech, against katie's real mouth.
        kf = feats[enc, "katie"]
        frames = range(min(CROSS_FRAMES, katie["n"]))
        if calibrated:
            est = driven(readout(feats[enc, "may"], may), kf, frames)
        else:
            est = kf[:len(frames), opening_col]
        r0, r, lag = rs(est, katie["opening"][:len(frames)])
        cells["cross-voice"] = (r0, r)
        lags.append(lag)
        timed = "speech model" if enc == "aligned" else enc
        rows.append((row, cells, int(np.median(lags)), (ms[timed, "may"] + ms[timed, "katie"]) / 2))

    print(f"footage offsets found by the speech model (frames, sound late): {offsets}\n")
    if rule_baseline.AVAILABLE:   # rule tables from phonemes: one curve per clip, no fitting to anyone
        cells, lags, cost = {}, [], 0.0
        for clip, s in (("may", may), ("katie", katie)):
            t = time.perf_counter()
            curve = rule_baseline.openfacefx_opening(s["audio"], s["n"], float(s["fps"]))
            cost += (time.perf_counter() - t) * 1000 / (len(s["audio"]) / AUDIO_RATE) / 2
            r0, r, lag = rs(curve, s["opening"])
            cells[f"{clip} whole"] = (r0, r)
            lags.append(lag)
            cells[f"{clip} held-out"] = rs(curve[s["n_train"]:], s["opening"][s["n_train"]:])[:2]
            if clip == "katie":
                cells["cross-voice"] = rs(curve[:CROSS_FRAMES], s["opening"][:CROSS_FRAMES])[:2]
        rows.append(("openfacefx rule baseline", cells, int(np.median(lags)), cost))

    cols = ("corpus", "may whole", "katie whole", "may held-out", "katie held-out", "cross-voice")
    print("| method | " + " | ".join(f"{c} r (lag 0 / best)" for c in cols) + " | median best lag | ms per s |")
    print("|---|" + "---|" * (len(cols) + 2))
    for name, cells, lag, cost in rows:
        shown = [f"{cells[c][0]:.3f} / {cells[c][1]:.3f}" if c in cells else "—" for c in cols]
        print(f"| {name} | " + " | ".join(shown) + f" | {lag:+d} | {cost:.0f} |")


if __name__ == "__main__":
    main()
