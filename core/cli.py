"""avatar-studio-cli: one subcommand per job, a progress bar, clear errors and exit codes. Each job's options are
made from its config dataclass (core.options): defaults, choices and help are the code's own.

Exit codes: 0 done, 1 failed (the message says why), 2 bad usage, 130 cancelled (Ctrl-C).
"""

from __future__ import annotations

import argparse
import signal
import statistics
import time
import sys
from dataclasses import replace
from fractions import Fraction
from pathlib import Path
from typing import Any, Sequence

from rich.console import Console
from rich.progress import BarColumn, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as Bar

from core import __version__
from core.errors import AvatarStudioError, log_unexpected
from core.jobs import Cancelled, CancelToken, Job, Progress
from core.memory import hold_mmap_threshold
from core.options import add_options, from_args
from core.pipeline import STAGES, StageStatus
from core.pipeline import status as stage_status
from core.project import Project, is_project, remove_empty

err = Console(stderr=True, soft_wrap=True, highlight=False)
out = Console(soft_wrap=True, highlight=False)


def say(text: str) -> None:
    """Print plain text (paths and names may hold brackets that rich would read as markup)."""
    out.print(text, markup=False)


def say_status(stage: str, status: StageStatus) -> None:
    """One stage's line: current, stale (why) or missing (what to run)."""
    say(f"  {stage}: {status.state}" + (f" ({status.reason})" if status.reason else ""))


def run_with_bar(job: Job[Any]) -> Any:
    """Run a job in this thread with a progress bar; Ctrl-C, or SIGTERM (a session logging out, a scheduler),
    cancels it cleanly: it saves its checkpoint and leaves the project as it was."""
    cancel = CancelToken()
    previous = {s: signal.signal(s, lambda *_: cancel.cancel()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with Bar(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn(),
                 console=err, transient=False) as bar:
            task = bar.add_task(job.name, total=1.0)

            def report(p: Progress) -> None:
                bar.update(task, completed=p.fraction, description=p.message or job.name)

            return job.run(report, cancel)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def run_with_lines(job: Job[Any], every_s: float = 2.0) -> Any:
    """Run a job in this thread printing its progress as a plain line every ``every_s`` seconds: for live mode,
    whose render threads a redrawn progress bar slows (frames per second halved here). Ctrl-C or SIGTERM cancel."""
    cancel = CancelToken()
    previous = {s: signal.signal(s, lambda *_: cancel.cancel()) for s in (signal.SIGINT, signal.SIGTERM)}
    last = [0.0]

    def report(p: Progress) -> None:
        now = time.monotonic()
        if now - last[0] >= every_s and p.message:
            last[0] = now
            err.print(p.message, markup=False, highlight=False)

    try:
        return job.run(report, cancel)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def cmd_ingest(args: argparse.Namespace) -> int:
    from core.ingest import IngestConfig, IngestJob, is_silent

    root = Path(args.project)
    config = from_args(IngestConfig, args)
    existed, created = root.exists(), not is_project(root)
    project = Project.create(root) if created else Project.open(root)
    try:
        ref = run_with_bar(IngestJob(project, Path(args.footage), config))
    except BaseException:
        if created:  # the project this import made is empty: nothing is left behind
            remove_empty(project.root, keep_folder=existed)
        raise
    say(f"Imported {Path(ref.path).name} into project {project.root}")
    if config.sound:
        say(f"  its sound from {config.sound}" + (f", {config.offset:+.3f} s removed" if config.offset else "")
            + "; the audio stage finds any offset left and removes it")
    elif is_silent(project):
        say("  the footage has no sound: the avatar's lips learn from the tracked face alone, and it speaks any "
            "speech you dub (import its sound with --audio FILE if it was recorded apart)")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    project = Project.open(args.project)
    say(f"{project.name}  ({project.root})")
    say(f"  created {project.created}, modified {project.modified}")
    if project.footage is None:
        say("  footage: none (run 'avatar-studio-cli ingest FOOTAGE --project DIR')")
    else:
        f, i = project.footage, project.footage.info
        status = project.footage_status()
        say(f"  footage: {f.path}  [{status.value}]")
        say(f"    {i['width']}x{i['height']}, {i['fps']} fps, {i['frame_count']} frames, "
                  f"{i['duration']:.3f} s, video {i['video_codec']}")
        for a in i["audio"]:
            say(f"    audio #{a['index']}: {a['codec']}, {a['sample_rate']} Hz, {a['channels']} ch, {a['duration']:.3f} s")
        say(f"    sha256 {f.sha256}")
    for name, rec in project.stages.items():
        say(f"  stage {name}: {', '.join(rec.files)}  ({rec.created})")
    for name, st in stage_status(project).items():
        say_status(name, st)
    return 0


def cmd_track(args: argparse.Namespace) -> int:
    import numpy as np

    from core.tracking.track import TrackConfig, TrackJob, without_face

    faces = TrackConfig().landmarks.max_faces
    if args.face is not None and not 0 <= args.face < faces:
        err.print(f"error: --face must be between 0 and {faces - 1}, got {args.face}", markup=False)
        return 2
    project = Project.open(args.project)
    result = run_with_bar(TrackJob(project, face=args.face))
    detected, valid = result["detected"], result["valid"]
    reproj = float(np.mean(result["reproj_px"][valid]))
    say(f"Tracked {project.name}: a face on {int(detected.sum())}/{len(detected)} frames "
        f"({int((valid & ~detected).sum())} interpolated), focal {float(result['focal']):.1f} px, "
        f"mean reprojection error {reproj:.2f} px")
    if (~valid).mean() > 0.1:
        fps = float(Fraction(project.footage.info["fps"]))
        spans = ", ".join(f"{a / fps:.1f}-{b / fps:.1f} s" for a, b in without_face(valid))
        say(f"warning: no face in {int((~valid).sum())} frames ({100 * (~valid).mean():.0f}%: {spans}); training "
            "and evaluation skip them and a dub shows them as they are")
    return 0


def cmd_audio(args: argparse.Namespace) -> int:
    from core.audio.features import AudioConfig, AudioFeaturesJob
    from core.audio.train_ave import AveTrainConfig

    config = from_args(AudioConfig, args, AudioConfig(train=from_args(AveTrainConfig, args, AveTrainConfig())))
    if config.encoder == "synctalk" and config.synctalk_checkpoint is None:
        err.print("error: --encoder synctalk needs --synctalk-checkpoint PATH (SyncTalk's audio_visual_encoder.pth)",
                  markup=False)
        return 2
    project = Project.open(args.project)
    result = run_with_bar(AudioFeaturesJob(project, config))
    t, d = result.features.shape
    r = result.report
    say(f"Audio features for {project.name}: {t} frames x {d} ({result.encoder})")
    if "offset_frames" not in r and result.encoder == "speech":
        say("  the footage has no sound: the avatar calibrates the speech model from the tracked face alone")
    if "mouth_r" in r:
        say(f"  held-out frames: mouth-opening r {r['mouth_r']:.3f} (linear readout of these features)")
    if "offset_frames" in r and "sync_score" in r:
        say(f"  sync model on held-out frames: offset {r['offset_frames']:+.0f} frames, margin {r['sync_score']:.3f}")
    elif "offset_frames" in r:
        ms = r["offset_frames"] / float(Fraction(project.checked_footage().info["fps"])) * 1000
        say(f"  the footage's sound comes {abs(ms):.0f} ms {'late' if ms >= 0 else 'early'} against its picture "
            f"({r['offset_frames']:+.0f} frames, found by the speech model at r {r['offset_r']:.2f}): removed")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from core.avatar.config import preset
    from core.avatar.train import TrainAvatarJob

    config = preset(args.preset)
    if args.steps is not None:
        if len(args.steps) != 2 or min(args.steps) < 0:
            err.print("error: --steps takes two counts, stage 1 and stage 2", markup=False)
            return 2
        config = replace(config, stage1_steps=args.steps[0], stage2_steps=args.steps[1])
    project = Project.open(args.project)
    result = run_with_bar(TrainAvatarJob(project, config))
    say(f"Trained the avatar of {project.name}: {result.steps} steps, {result.gaussians} Gaussians ({config.preset})")
    if result.history:
        last = result.history[-1]
        say(f"  last step: loss {last['loss']:.4f}, face PSNR {last['psnr']:.2f} dB (a training frame)")
    return 0


def cmd_avatars(args: argparse.Namespace) -> int:
    from core.avatar.archive import RestoreAvatarJob, archived

    project = Project.open(args.project)
    if args.restore:
        kept = run_with_bar(RestoreAvatarJob(project, args.restore))
        say(f"Restored the avatar {args.restore}" + (f"; the one it replaced is kept as {kept.name}" if kept else ""))
        say_status("avatar", stage_status(project)["avatar"])
        return 0
    kept = archived(project)
    if not kept:
        say(f"{project.name} keeps no earlier avatars")
    for a in kept:
        say(f"  {a.name}: " + (f"{a.preset}, {a.steps:,} steps, trained {a.created}" if a.trained else
                               "an unfinished run (restore it, then train with its preset and steps to resume)"))
    return 0


def cmd_expression(args: argparse.Namespace) -> int:
    from core.expression.transfer import clear_edits, export_take, import_take

    project = Project.open(args.project)
    if args.import_csv:
        frames = import_take(project, Path(args.import_csv), args.keep_in_range)
        say(f"Imported {Path(args.import_csv).name} as the edited expressions of {project.name}: {frames} frames "
            "(the upper face of every dub follows them" + (", kept in the subject's range)" if args.keep_in_range
                                                           else ")"))
    elif args.export:
        out = Path(args.export)
        if not out.parent.is_dir():
            err.print(f"error: {out.parent} is not a folder: the file's folder must exist", markup=False)
            return 2
        frames = export_take(project, out, args.fps)
        say(f"Wrote {frames} frames of {project.name}'s expressions to {out}")
    else:
        aside = clear_edits(project)
        say(f"Cleared the edited expressions (kept as {', '.join(p.name for p in aside)})" if aside
            else f"{project.name} has no edits")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from core.avatar.evaluate import EvalJob
    from core.layout import eval_files

    project = Project.open(args.project)
    r = run_with_bar(EvalJob(project, args.mouth))
    last = r['first_frame'] + r['frames'] + r.get('without_face', 0) - 1
    skipped = f" ({r['without_face']} without a face in view, not scored)" if r.get("without_face") else ""
    say(f"Held-out frames {r['first_frame']}-{last} of {project.name}{skipped}, "
        f"lips driven by their {'audio' if args.mouth == 'audio' else 'tracked mouths'}:")
    say(f"  face PSNR {r['face_psnr']:.2f} dB, full-frame PSNR {r['full_psnr']:.2f} dB, SSIM {r['ssim']:.3f}")
    say(f"  mouth LMD {r['lmd_centred']:.2f} px centred, {r['lmd_raw']:.2f} px raw; "
        f"mouth-opening r {r['mouth_r']:.3f} (lag {r['mouth_lag']:+.0f})")
    say(f"  before rendering, the opening that drives the lips: r {r['drive_r']:.3f} (lag {r['drive_lag']:+.0f})")
    say("  written: " + ", ".join(str(project.path(f)) for f in eval_files(args.mouth)))
    return 0


def cmd_dub(args: argparse.Namespace) -> int:
    from core.dub import DubConfig, DubJob

    try:
        config = from_args(DubConfig, args)
    except ValueError as e:
        err.print(f"error: {e}", markup=False)
        return 2
    project = Project.open(args.project)
    r = run_with_bar(DubJob(project, Path(args.audio), Path(args.out), config))
    for note in r.notes:
        say(f"note: {note}")
    say(f"Dubbed {project.name}: {r.frames} frames ({r.seconds:.1f} s) at {r.fps:.1f} frames/s -> {r.path}")
    return 0


def cmd_speech_model_train(args: argparse.Namespace) -> int:
    import platformdirs

    from core.speech.model import LIVE_FILE, LIVE_MODEL, SHIPPED_FILE
    from core.speech.train import SpeechModelTrainJob, SpeechTrainConfig

    data = Path(platformdirs.user_data_dir("avatar-studio", appauthor=False))
    out = Path(args.out) if args.out else data / (LIVE_FILE if args.live else SHIPPED_FILE)
    config = SpeechTrainConfig(model=LIVE_MODEL) if args.live else SpeechTrainConfig()
    cache = (Path(args.cache) if args.cache
             else Path(platformdirs.user_cache_dir("avatar-studio", appauthor=False)) / "speech-corpus")
    if not out.parent.is_dir():
        out.parent.mkdir(parents=True, exist_ok=True)
    cache.mkdir(parents=True, exist_ok=True)
    result = run_with_bar(SpeechModelTrainJob(Path(args.corpus), out, cache, config, tuple(args.clips or ())))
    v = result.card["validation"]
    say(f"Speech model: {len(result.card['trained_on'])} clips -> {out} (sha256 {result.card['sha256'][:12]}...)")
    say(f"  held-out speakers ({v['method']}): lip-opening r median {v['median_speaker_r']:.3f} at lag 0, "
        f"{v['median_speaker_r_best_lag']:.3f} at the best lag")
    offsets = [abs(c["offset_ms"]) for c in result.card["trained_on"]]
    say(f"  each clip's own sound-to-picture offset removed: median {statistics.median(offsets):.0f} ms, largest "
        f"{max(offsets)} ms")
    for file, why in result.card["left_out"].items():
        say(f"  left out {file}: {why}")
    say(f"  model card: {out.with_suffix('.card.json')}")
    return 0


def cmd_expression_model_train(args: argparse.Namespace) -> int:
    import platformdirs

    from core.expression.codebook import CodebookConfig
    from core.expression.learn import GeneratorTrainJob

    out = Path(args.out) if args.out else (Path(platformdirs.user_data_dir("avatar-studio", appauthor=False))
                                           / "expression_generator.npz")
    cache = (Path(args.cache) if args.cache
             else Path(platformdirs.user_cache_dir("avatar-studio", appauthor=False)) / "speech-corpus")
    out.parent.mkdir(parents=True, exist_ok=True)
    cache.mkdir(parents=True, exist_ok=True)
    codebook = CodebookConfig()
    if args.prior_steps is not None:
        if args.prior_steps < 1:
            raise AvatarStudioError(f"--prior-steps must be at least 1, got {args.prior_steps}")
        codebook = replace(codebook, prior_steps=args.prior_steps)
    card = run_with_bar(GeneratorTrainJob(Path(args.corpus), out, cache, clips=tuple(args.clips or ()),
                                          codebook=codebook))
    v = card["validation"]
    say(f"Expression generator: {len(card['trained_on'])} clips -> {out} (sha256 {card['sha256'][:12]}...)")
    say(f"  blinks {card['blinks_per_min']:.1f}/min; brows from speech, r on held-out speakers "
        f"{v['brow_r_held_out']:.2f} ({', '.join(v['held_out_speakers'])})")
    say(f"  model card: {out.with_name(out.stem + '.card.json')}")
    return 0


def cmd_lipsync(args: argparse.Namespace) -> int:
    from core.speech.lipsync import LipsyncJob

    out = Path(args.csv)
    if not out.parent.is_dir():
        err.print(f"error: {out.parent} is not a folder: the CSV's folder must exist", markup=False)
        return 2
    track = run_with_bar(LipsyncJob(Path(args.speech), out, float(args.fps),
                                    Path(args.model) if args.model else None))
    say(f"Wrote {len(track)} frames of ARKit blendshapes at {args.fps} fps to {out}")
    return 0


def cmd_live(args: argparse.Namespace) -> int:
    from core.live.input import input_devices
    from core.live.session import LiveConfig, LiveJob

    if args.list_inputs:
        devices = input_devices()
        for d in devices:
            say(f"  {d.index}: {d.name} ({d.channels} channels, {d.rate:g} Hz)")
        if not devices:
            say("no audio inputs found")
        return 0
    if args.project is None:
        err.print("error: live needs --project DIR", markup=False)
        return 2
    run = run_with_lines(LiveJob(Project.open(args.project), args.input, from_args(LiveConfig, args),
                               Path(args.record) if args.record else None, Path(args.csv) if args.csv else None,
                               args.seconds, args.virtual_camera))
    s = run.stats
    say(f"Live: {s.frames} frames shown, {s.dropped} dropped, latency {s.latency_ms:.0f} ms (median), "
        f"{s.fps:.1f} frames/s" + (f"; {s.message}" if s.message else ""))
    for path in run.files:
        say(f"  wrote {path}")
    return 0


def cmd_stage(args: argparse.Namespace) -> int:
    """Run a registered stage that has no command of its own, with its config's options."""
    stage = STAGES[args.stage]
    project = Project.open(args.project)
    run_with_bar(stage.resolve("job")(project, from_args(stage.resolve("config"), args)))
    files = project.stages[stage.name].files
    say(f"Made {stage.label} of {project.name}: {', '.join(str(project.path(f)) for f in files)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from core.audio.features import AudioConfig
    from core.audio.train_ave import AveTrainConfig
    from core.avatar.config import DEFAULT_PRESET, PRESETS, describe
    from core.dub import DubConfig
    from core.ingest import IngestConfig
    from core.live.session import LiveConfig
    from core.speech.lipsync import FRAME_RATES

    p = argparse.ArgumentParser(prog="avatar-studio-cli", description="Avatar Studio batch commands.")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("ingest", help="import footage into a project (created if needed)")
    s.add_argument("footage", help="talking-head video (with the speaker's voice, or silent)")
    s.add_argument("--project", required=True, metavar="DIR", help="project folder")
    add_options(s, IngestConfig)
    s.set_defaults(func=cmd_ingest)

    s = sub.add_parser("info", help="describe a project and check its footage")
    s.add_argument("--project", required=True, metavar="DIR", help="project folder")
    s.set_defaults(func=cmd_info)

    s = sub.add_parser("track", help="track the face: landmarks, blendshapes, head pose (stabilized)")
    s.add_argument("--project", required=True, metavar="DIR", help="project folder")
    s.add_argument("--face", type=int, default=None, metavar="N",
                   help="follow the N-th face from the left (0 first) instead of the largest, most central")
    s.set_defaults(func=cmd_track)

    s = sub.add_parser("audio", help="audio features per frame: the speech model's mouth estimates (default), "
                                     "speech-normalised log-mel, the audio-visual encoder trained on the footage, "
                                     "Whisper or SyncTalk's encoder")
    s.add_argument("--project", required=True, metavar="DIR", help="project folder")
    add_options(s, AudioConfig)
    add_options(s, AveTrainConfig)
    s.set_defaults(func=cmd_audio)

    s = sub.add_parser("train", help="train the avatar (two stages; resumes from the project's checkpoint)")
    s.add_argument("--project", required=True, metavar="DIR", help="project folder")
    s.add_argument("--preset", choices=list(PRESETS), default=DEFAULT_PRESET,
                   help="; ".join(f"{name}: {describe(name)}" for name in PRESETS) + f" (default: {DEFAULT_PRESET})")
    s.add_argument("--steps", type=int, nargs=2, default=None, metavar=("STAGE1", "STAGE2"),
                   help="steps of each stage instead of the preset's")
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("avatars", help="the avatars kept when a run with another config replaced them; --restore "
                                      "brings one back")
    s.add_argument("--project", required=True, metavar="DIR", help="project folder")
    s.add_argument("--restore", metavar="NAME", help="make this kept avatar the project's again (the current one "
                                                     "is kept)")
    s.set_defaults(func=cmd_avatars)

    s = sub.add_parser("expression", help="the edited expression track: import a Live Link Face CSV (a phone take), "
                                          "export it as CSV or JSON, or clear it")
    s.add_argument("--project", required=True, metavar="DIR", help="project folder")
    what = s.add_mutually_exclusive_group(required=True)
    what.add_argument("--import", dest="import_csv", metavar="FILE.csv", help="make this take the edited track, "
                                                                               "resampled to the footage's frames")
    what.add_argument("--export", metavar="FILE", help="write the edited track (the tracked one without edits): "
                                                       ".csv (Live Link Face) or .json")
    what.add_argument("--clear", action="store_true", help="drop the edits (set aside, not deleted)")
    s.add_argument("--fps", type=int, choices=FRAME_RATES, default=None,
                   help="for --export: resample to this rate (default: the footage's)")
    s.add_argument("--no-keep-in-range", dest="keep_in_range", action="store_false",
                   help="for --import: take the brows and blinks as they are (by default they are rebuilt from the "
                        "subject's expression codebook, in the range this avatar has seen)")
    s.set_defaults(func=cmd_expression)

    s = sub.add_parser("eval", help="score the avatar on the held-out frames: PSNR, SSIM, LMD, mouth sync; "
                                    "writes eval.json and a side-by-side eval.mp4")
    s.add_argument("--project", required=True, metavar="DIR", help="project folder")
    s.add_argument("--mouth", choices=("audio", "tracked"), default="audio",
                   help="what drives the lips: the held-out audio (default), or the footage's tracked mouths, "
                        "the renderer's best case (writes eval_tracked.json and eval_tracked.mp4)")
    s.set_defaults(func=cmd_eval)

    s = sub.add_parser("dub", help="make the avatar speak new audio over the footage: an H.264 + AAC mp4, marked "
                                   "as synthetic")
    s.add_argument("--project", required=True, metavar="DIR", help="project folder (with a trained avatar)")
    s.add_argument("--audio", required=True, metavar="SPEECH", help="the speech: any audio file, or a video's audio")
    s.add_argument("--out", required=True, metavar="OUT.mp4", help="the video to write (its folder must exist)")
    add_options(s, DubConfig)
    s.set_defaults(func=cmd_dub)

    s = sub.add_parser("speech-model", help="the speech-to-face model shared by every avatar")
    sm = s.add_subparsers(dest="action", required=True, metavar="ACTION")
    t = sm.add_parser("train", help="train it on a corpus of people talking to camera (clips.csv + clips), "
                                    "speaker-disjoint; writes the weights and a model card")
    t.add_argument("--corpus", required=True, metavar="DIR", help="folder with clips.csv (file, speaker, ...)")
    t.add_argument("--out", metavar="FILE", help="the model file (default: the user data folder's speech_model.pt)")
    t.add_argument("--cache", metavar="DIR", help="where tracked clips are kept between runs (default: user cache)")
    t.add_argument("--clips", nargs="+", metavar="NAME", help="only these clips of clips.csv (file names)")
    t.add_argument("--live", action="store_true", help="the live model: a shorter look-ahead and less computing "
                                                       "(live mode's; default file speech_model_live.pt)")
    t.set_defaults(func=cmd_speech_model_train)

    s = sub.add_parser("expression-model", help="the expression generator (brows and blinks from speech)")
    em = s.add_subparsers(dest="action", required=True, metavar="ACTION")
    t = em.add_parser("train", help="fit it on a corpus of people talking to camera (clips.csv + clips); writes "
                                    "the model, its sha256 and a model card")
    t.add_argument("--corpus", required=True, metavar="DIR", help="folder with clips.csv (file, speaker, ...)")
    t.add_argument("--out", metavar="FILE", help="the model file (default: the user data folder's "
                                                 "expression_generator.npz)")
    t.add_argument("--cache", metavar="DIR", help="where tracked clips are kept between runs (default: user cache)")
    t.add_argument("--clips", nargs="+", metavar="NAME", help="only these clips of clips.csv (file names), e.g. "
                                                               "those whose terms allow commercial use")
    t.add_argument("--prior-steps", type=int, metavar="N", help="training steps of the expression codebook's "
                                                                  "prior (default 2000; fewer: quicker, coarser)")
    t.set_defaults(func=cmd_expression_model_train)

    s = sub.add_parser("lipsync", help="speech -> ARKit blendshape animation (Live Link Face CSV), no footage needed")
    s.add_argument("speech", help="the speech: any audio file, or a video's audio")
    s.add_argument("--csv", required=True, metavar="OUT.csv", help="the CSV to write")
    s.add_argument("--fps", type=int, choices=FRAME_RATES, default=30, help="frames per second (default: 30)")
    s.add_argument("--model", metavar="FILE", help="a speech model from 'speech-model train' (default: the shipped one)")
    s.set_defaults(func=cmd_lipsync)

    s = sub.add_parser("live", help="the avatar speaks what a microphone hears (or a sound file played in real time), "
                                    "shown as it goes; records takes")
    s.add_argument("--project", metavar="DIR", help="project folder (with a trained avatar)")
    s.add_argument("--input", metavar="DEVICE|FILE", help="an input device (its number or part of its name; default: "
                                                          "the system's) or a sound file to play as if heard live")
    s.add_argument("--record", metavar="OUT.mp4", help="record the session: H.264 + the input's sound as AAC")
    s.add_argument("--csv", metavar="OUT.csv", help="with --record: the blendshapes that drove it (Live Link Face CSV)")
    s.add_argument("--seconds", type=float, metavar="S", help="stop after this long (default: at the file's end or "
                                                                "Ctrl-C)")
    s.add_argument("--virtual-camera", action="store_true", help="send the frames to a virtual webcam as well")
    s.add_argument("--list-inputs", action="store_true", help="list the audio inputs and stop")
    add_options(s, LiveConfig)
    s.set_defaults(func=cmd_live)

    for stage in STAGES.values():
        if stage.command not in sub.choices:  # a stage with no command of its own: one from its registry entry
            s = sub.add_parser(stage.command, help=stage.help)
            s.add_argument("--project", required=True, metavar="DIR", help="project folder")
            add_options(s, stage.resolve("config"))
            s.set_defaults(func=cmd_stage, stage=stage.name)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    hold_mmap_threshold()  # a long dub's memory stays flat
    try:
        return args.func(args)
    except Cancelled as e:
        err.print(f"cancelled: {e}", markup=False)
        return 130
    except AvatarStudioError as e:
        err.print(f"error: {e}", markup=False)
        return 1
    except Exception as e:  # noqa: BLE001 - the one boundary: a bug becomes a message and a log, not a traceback
        project = getattr(args, "project", None)
        log = log_unexpected(e, Path(project) if project else None, f"avatar-studio-cli {args.command}")
        err.print(f"error: something went wrong ({type(e).__name__}: {e}); the details are in {log}. Nothing the "
                  "project held was changed by the failed step.", markup=False)
        return 1


if __name__ == "__main__":
    sys.exit(main())
