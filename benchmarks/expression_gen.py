"""The Expression Generator against the footage loop and a still face: blinks, and how a 2 s stretch of the upper
face moves compared with real people.

Run by hand (the corpus's tracking is cached in --cache; the first run tracks it, minutes)::

    python benchmarks/expression_gen.py --project DIR/may_13s [--cache DIR]

The generator is fitted on the corpus without the three speakers with the most face frames (held out). Then:
1. Blinks per minute and median blink duration (full width at half the rise, ``core.expression.generator``'s
   detector) of every corpus speaker with at least 10 s of face: the human range here.
2. May's upper face for the 60 s speech (speech_en_60s_16k.wav), as the dub would drive it: the footage looped
   (ping-pong, today's dub), a still face (her median), the generator (seed 0). Blinks of each, and the Fréchet
   distance between their 2 s windows and the held-out speakers' real windows. A window (50 frames at 25 fps, hop
   5) is described per core blendshape by its mean, spread and mean frame-to-frame change: 21 numbers.
3. Each held-out speaker's own speech: the generator (for their face: their resting brows and blink height) and a
   still face, against their real track, the same way.
With codebook: the generated track rebuilt by the subject's codebook (the prior fitted here on the training clips,
then on the subject's own footage: May's, or the held-out speaker's own track); for May, the codebook trained from
seeds 1-3 as well: how much the distance moves with the codebook's draw.
4. Fidelity across identities: May's avatar (--project must hold a trained one) renders her footage's first 200
   frames with a held-out speaker's real upper face (vox_B's), raw and through May's codebook; our tracker re-tracks
   the renders: r between the requested and the re-tracked eyeBlink (left and right averaged) and browInnerUp,
   and on how many frames a face was found.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import numpy as np
from scipy import linalg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.dub import pingpong  # noqa: E402
from core.audio.features import load_features  # noqa: E402
from core.avatar.drive import Driver  # noqa: E402
from core.baselines import FrameList  # noqa: E402
from core.expression.codebook import CodebookConfig, ExpressionVQ, fit, in_range, learn_subject, prior_tracks  # noqa: E402
from core.expression.generator import GeneratorConfig, Subject, blink_stats, generate  # noqa: E402
from core.expression.learn import brow_r, fit_generator  # noqa: E402
from core.media import FrameReader, load_audio  # noqa: E402
from core.tracking.landmarks import detect_landmarks  # noqa: E402
from core.project import Project  # noqa: E402
from core.speech.corpus import load_corpus  # noqa: E402
from core.speech.frontend import Frontend  # noqa: E402
from core.tracking.landmarks import BLENDSHAPE_NAMES, EXPRESSION_BLENDSHAPES  # noqa: E402
from core.tracking.track import load_tracking  # noqa: E402

MEDIA = ROOT.parent / "shared" / "media"
CORPUS = ROOT.parent / "shared" / "corpus"
CORE = [BLENDSHAPE_NAMES.index(n) for n in EXPRESSION_BLENDSHAPES]
RATE = 25.0
WINDOW, HOP = 50, 5


def at_25(track: np.ndarray, fps: float) -> np.ndarray:
    """track [T,K] at ``fps`` read at 25 fps (linear)."""
    t = np.arange(len(track)) / fps
    at = np.arange(int(len(track) / fps * RATE)) / RATE
    return np.stack([np.interp(at, t, track[:, k]) for k in range(track.shape[1])], axis=1)


def windows(track: np.ndarray) -> np.ndarray:
    """[W,21]: per 2 s window of a 25 fps core track [T,7], each shape's mean, std and mean |change|."""
    out = []
    for a in range(0, len(track) - WINDOW + 1, HOP):
        w = track[a:a + WINDOW]
        out.append(np.concatenate([w.mean(0), w.std(0), np.abs(np.diff(w, axis=0)).mean(0)]))
    return np.array(out)


def frechet(a: np.ndarray, b: np.ndarray) -> float:
    mu_a, mu_b = a.mean(0), b.mean(0)
    ca, cb = np.cov(a, rowvar=False) + 1e-9 * np.eye(a.shape[1]), np.cov(b, rowvar=False) + 1e-9 * np.eye(a.shape[1])
    root = linalg.sqrtm(ca @ cb).real
    return max(0.0, float(((mu_a - mu_b) ** 2).sum() + np.trace(ca + cb - 2 * root)))


def blinks(track: np.ndarray) -> str:
    rate, duration = blink_stats(track[:, 5:7].mean(axis=1), RATE)
    return f"{rate:.0f} | {duration:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", type=Path, required=True, help="a tracked May project (may_13s)")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/scache"), help="the corpus's tracking cache")
    args = parser.parse_args()

    frontend = Frontend()
    clips, failed = load_corpus(CORPUS, frontend, args.cache)
    face = {}
    for c in clips:
        face[c.row.speaker] = face.get(c.row.speaker, 0) + int(c.valid.sum()) / float(c.fps)
    held = sorted(face, key=lambda s: (-face[s], s))[:3]
    train = [c for c in clips if c.row.speaker not in held]
    test = [c for c in clips if c.row.speaker in held]
    model = fit_generator(train)
    print(f"Corpus: {len(clips)} clips tracked ({len(failed)} not), {len(face)} speakers; held out: "
          f"{', '.join(held)}. Trained on {len(train)} clips. Brow estimate from speech, mean r: training "
          f"{brow_r(model, train):.2f}, held out {brow_r(model, test):.2f}. Blinks sampled at "
          f"{model.blink_rate:.1f}/min (gamma k {model.interval_shape:.2f}); brows' residual: slow {model.brows.slow_std:.2f} z "
          f"(AR {model.brows.slow_ar:.2f}), jitter {model.brows.fast_std:.2f} z (AR {model.brows.fast_ar:.2f}).")

    people = []
    for speaker in sorted(face):
        if face[speaker] >= 10:
            own = [c for c in clips if c.row.speaker == speaker]
            track = np.concatenate([at_25(c.blendshapes[:, CORE], float(c.fps)) for c in own])
            rate, duration = blink_stats(track[:, 5:7].mean(axis=1), RATE)
            people.append((rate, duration))
    rates, durations = np.array(people).T
    print(f"\n1. Corpus speakers with >= 10 s of face ({len(people)}): blinks/min {rates.min():.0f}-{rates.max():.0f} "
          f"(median {np.median(rates):.0f}); median duration {np.nanmin(durations):.0f}-{np.nanmax(durations):.0f} ms "
          f"(median {np.nanmedian(durations):.0f})")

    real = {s: at_25(np.concatenate([c.blendshapes[:, CORE] for c in test if c.row.speaker == s]), 25.0)
            for s in held}
    reference = np.concatenate([windows(t) for t in real.values()])

    tracking = load_tracking(Project.open(args.project))
    may = tracking["blendshapes"]
    speech = load_audio(MEDIA / "speech_en_60s_16k.wav", 16000)
    n = int(len(speech) / 16000 * RATE)
    states = frontend.states(speech)
    corpus_tracks = prior_tracks([(c.blendshapes, c.valid.astype(bool), float(c.fps)) for c in train])
    prior = ExpressionVQ(CodebookConfig())
    fit(prior, corpus_tracks, prior.config.prior_steps)
    may_book = learn_subject(prior, may[:, CORE])
    generated = generate(model, Subject.of(may, RATE), states, n, Fraction(25), GeneratorConfig())
    tracks = {
        "footage loop (today)": may[pingpong(np.arange(n), len(may))][:, CORE],
        "still face": np.repeat(np.median(may[:, CORE], axis=0)[None], n, axis=0),
        "generator, no codebook": generated,
        "generator with codebook": in_range(may_book, generated),
    }
    print("\n2. May, 60 s of new speech: blinks/min | median ms, and the Fréchet distance of its 2 s windows to the "
          "held-out speakers' real ones")
    print("| upper face | blinks/min | median blink ms | Fréchet to real |")
    print("|---|---|---|---|")
    for name, track in tracks.items():
        print(f"| {name} | {blinks(track)} | {frechet(windows(track), reference):.4f} |")
    seeded = []
    for seed in (1, 2, 3):
        other = ExpressionVQ(replace(CodebookConfig(), seed=seed))
        fit(other, corpus_tracks, other.config.prior_steps)
        seeded.append(frechet(windows(in_range(learn_subject(other, may[:, CORE]), generated)), reference))
    print(f"Generator with codebook, the codebook trained from seeds 1, 2, 3: Fréchet "
          f"{', '.join(f'{f:.4f}' for f in seeded)}")

    print("\n3. Held-out speakers, their own speech: the same against their own real track")
    print("| speaker | upper face | blinks/min | median blink ms | Fréchet to their real track |")
    print("|---|---|---|---|---|")
    for s in held:
        own = [c for c in test if c.row.speaker == s]
        track = real[s]
        subject = Subject.of(np.concatenate([c.blendshapes for c in own]), float(own[0].fps))
        gen = np.concatenate([generate(model, subject, c.states, int(len(c.valid) / float(c.fps) * RATE),
                                       Fraction(25), GeneratorConfig(seed=i)) for i, c in enumerate(own)])
        still = np.repeat(np.median(track, axis=0)[None], len(track), axis=0)
        booked = in_range(learn_subject(prior, track), gen)
        for name, t in (("real", track), ("still face", still), ("generator, no codebook", gen),
                        ("generator with codebook", booked)):
            print(f"| {s} | {name} | {blinks(t)} | {frechet(windows(t), windows(track)):.4f} |")

    project = Project.open(args.project)
    driver = Driver.load(project)
    features = np.ascontiguousarray(load_features(project).features, np.float32)
    other = real["vox_B"] if "vox_B" in real else next(iter(real.values()))
    frames = min(200, len(other), len(may))
    requested = {"raw": other[:frames], "with May's codebook": in_range(may_book, other[:frames])}
    print(f"\n4. May's avatar driven by a held-out speaker's real upper face ({frames} frames), re-tracked")
    print("| upper face | r eyeBlink | r browInnerUp | frames with a face |")
    print("|---|---|---|---|")
    with FrameReader(project.checked_footage().path) as reader:
        footage = [reader.read(i) for i in range(frames)]
    for name, want in requested.items():
        renders = [driver.frame(footage[i], i, driver.lip(driver.model.audio_window(features, i)), want[i])
                   for i in range(frames)]
        got = detect_landmarks(FrameList(renders, reader.fps))
        seen = got.blendshapes[:, CORE]
        r_blink = np.corrcoef(want[:, 5:7].mean(1), seen[:, 5:7].mean(1))[0, 1]
        r_brow = np.corrcoef(want[:, 2], seen[:, 2])[0, 1]
        print(f"| {name} | {r_blink:.2f} | {r_brow:.2f} | {int(got.detected.sum())}/{frames} |")


if __name__ == "__main__":
    main()
