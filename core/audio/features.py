"""The audio-features stage as a job: the footage's audio -> one feature per video frame [T,D], and the
encoders that make them for any other audio (dubbing, live input).

Encoders: ``speech`` (the speech model's mouth estimates, core.speech: learnt from many voices, the default),
``mel`` (log-mel pooled per frame and normalised on each clip's speech), ``ave`` (the
audio-visual encoder trained on this footage, core.audio.train_ave), ``whisper`` (tiny.en's encoder states),
``ave+whisper`` (both side by side) and ``synctalk`` (SyncTalk's released encoder from a local checkpoint).

Why ``speech`` by default: the avatar is driven by other voices than the footage's (dubbing), and only a model
learnt from many voices reads a new voice as well as the footage's own (benchmarks/lipsync.py). ``mel`` needs no
model and reads any voice alike. The trained encoders stay for what only they do: the AVE learns this speaker's
sound-to-mouth timing and the sync discriminator (the held-out offset check); Whisper is pretrained on 680k hours.
The project keeps a trained encoder (``ave.pt``), its resumable training state (``ave_train.pt``) and the
footage's features (``audio_features.npz``) with the config that made them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from core.audio.ave import AVE_DIM, AudioEncoder, fused_for_inference, import_synctalk_checkpoint
from core.audio.mel import SYNCTALK_MEL, MelConfig, mel_windows, pooled_mel, speech_normalised
from core.audio.mouth import crop_transforms, lower_face_crops, mouth_opening, mouth_targets
from core.audio.train_ave import AveData, AveTrainConfig, AveTrainer, mouth_score, train_ave
from core.config import from_dict, to_dict
from core.errors import AvatarStudioError, ProjectError
from core.fsutil import Unreadable, atomic_path, load_npz, load_torch, save_npz
from core.ingest import is_silent
from core.jobs import CancelToken, Progress, ProgressFn, span
from core.layout import AUDIO_FILE, ENCODER_FILE, FEATURES_FILE, TRAIN_FILE
from core.media import AUDIO_RATE, FrameReader, load_audio
from core.options import option
from core.pipeline import begin
from core.project import Project, damaged, writes_project
from core.speech.frontend import Frontend
from core.speech.lipsync import estimates, speech_model
from core.speech.model import model_digest
from core.speech.offset import MAX_OFFSET_S, footage_offset, shifted
from core.speech.targets import OPENING
from core.speech.targets import OUTPUTS as SPEECH_OUTPUTS
from core.tracking.track import load_tracking

STAGE = "audio"
ENCODERS: dict[str, str] = {  # what each encoder is, for the CLI's help and the studio's encoder box
    "speech": "speech model, learnt from many voices",
    "mel": "log-mel, normalised on speech (any voice)",
    "ave+whisper": "AVE trained on this footage + Whisper",
    "ave": "AVE trained on this footage",
    "whisper": "Whisper tiny.en (pretrained)",
    "synctalk": "SyncTalk's released AVE, from its checkpoint file",
}
NEEDS_FILE = ("synctalk",)                # the encoders that read a file the user gives
TRAINED = ("ave+whisper", "ave")          # the encoders that train the AVE on the footage first
# Our encoder's mel: windows start at the frame. Mouths lead their sound (the mouth opening correlates best with
# the audio energy a few frames later), so the window looks ahead, not around.
AVE_MEL = MelConfig(window_start=0)


@dataclass(frozen=True)
class AudioConfig:
    encoder: str = option("speech", "what the avatar hears", choices=ENCODERS)
    mel: MelConfig = AVE_MEL             # for the AVE; "synctalk" always uses SYNCTALK_MEL
    train: AveTrainConfig = AveTrainConfig()
    synctalk_checkpoint: Path | None = option(None, "for synctalk: SyncTalk's audio_visual_encoder.pth",
                                              metavar="PATH")
    speech_model: Path | None = option(None, "for speech: a model from 'speech-model train' (default: the "
                                             "shipped one)", metavar="FILE")


@dataclass
class AudioFeatures:
    features: np.ndarray                 # float32 [T,D], one per video frame
    encoder: str
    report: dict[str, float] = field(default_factory=dict)  # held-out scores (see AudioFeaturesJob)
    blocks: tuple[int, ...] = ()         # each encoder's width when several lie side by side; () for one
    history: list[dict[str, float]] = field(default_factory=list)  # a trained encoder's curve, a dict a step


class FeatureEncoder(Protocol):
    id: str
    dim: int

    def features(self, audio: np.ndarray, n_frames: int, fps: Fraction, progress: ProgressFn | None = None,
                 cancel: CancelToken | None = None) -> np.ndarray: ...


@dataclass
class MelEncoder:
    """The log-mel spectrum pooled over each video frame, normalised per clip on its speech frames
    (core.audio.mel.speech_normalised). Needs no training and reads any voice alike: what drives the avatar
    by default. Its normalisation needs the whole clip, so live input needs running statistics instead."""

    speech_quantile: float = 25.0
    id: str = "mel"
    dim: int = MelConfig().n_mels

    def features(self, audio: np.ndarray, n_frames: int, fps: Fraction, progress: ProgressFn | None = None,
                 cancel: CancelToken | None = None) -> np.ndarray:
        """float32 [n_frames, 80] for audio float32 [S] at 16 kHz."""
        if cancel is not None:
            cancel.check("Audio features")
        out = speech_normalised(pooled_mel(audio, n_frames, fps), self.speech_quantile)
        if progress:
            progress(Progress(1.0, "Log-mel features"))
        return out


@dataclass
class SpeechEncoder:
    """The speech model's per-frame mouth estimates (core.speech): speaker-normalised z-scores of the lip opening
    and the mouth and jaw blendshapes, learnt from many voices. The avatar calibrates them to its subject from the
    footage's tracked face (core.avatar.model.AvatarModel.fit_calibration)."""

    model_path: Path | None = None       # a model from 'speech-model train'; None: the shipped one
    id: str = "speech"
    dim: int = len(SPEECH_OUTPUTS)

    def features(self, audio: np.ndarray, n_frames: int, fps: Fraction, progress: ProgressFn | None = None,
                 cancel: CancelToken | None = None) -> np.ndarray:
        """float32 [n_frames, 25] for audio float32 [S] at 16 kHz: the estimates scaled to the spread of real
        z-scores (estimates vary less than what they estimate), so that they stand in for tracked values."""
        model = speech_model(self.model_path)
        z = estimates(model, Frontend(model.net.config.frontend, cancel=cancel), audio, n_frames, fps, progress, cancel)
        return z / model.net.gain.numpy()


@dataclass
class AveEncoder:
    """An 80x16-mel-window encoder (ours or SyncTalk's) with the mel it was trained on."""

    net: AudioEncoder
    mel: MelConfig
    id: str = "ave"
    dim: int = AVE_DIM

    def __post_init__(self) -> None:
        self._fused = fused_for_inference(self.net)

    def encode(self, windows: torch.Tensor) -> np.ndarray:
        """float32 [N,512] of mel windows [N,1,80,16]: the one path offline and streaming features share."""
        with torch.inference_mode():
            return self._fused(windows).numpy()

    def features(self, audio: np.ndarray, n_frames: int, fps: Fraction, progress: ProgressFn | None = None,
                 cancel: CancelToken | None = None, batch: int = 256) -> np.ndarray:
        """float32 [n_frames, 512] for audio float32 [S] at 16 kHz."""
        windows = mel_windows(audio, n_frames, fps, self.mel)                 # [T,1,80,16]
        out = np.empty((n_frames, self.dim), np.float32)
        for start in range(0, n_frames, batch):
            if cancel is not None:
                cancel.check("Audio features")
            out[start:start + batch] = self.encode(windows[start:start + batch])
            if progress:
                progress(Progress(min(start + batch, n_frames) / max(n_frames, 1), "Encoding audio"))
        return out

    def save(self, path: Path, report: dict[str, float]) -> None:
        width = self.net.audio_encoder[0].conv_block[0].out_channels
        with atomic_path(path) as tmp:
            torch.save({"id": self.id, "width": width, "mel": json.dumps(to_dict(self.mel)),
                        "report": json.dumps(report), "encoder": self.net.state_dict()}, tmp)

    @classmethod
    def load(cls, path: Path) -> "AveEncoder":
        if not path.is_file():
            raise ProjectError(path, "no trained audio encoder: make the audio features again (avatar-studio-cli "
                                     "audio)")
        try:
            saved = load_torch(path)
            net = AudioEncoder(int(saved["width"]))
            net.load_state_dict(saved["encoder"])
            return cls(net.eval(), from_dict(MelConfig, json.loads(saved["mel"])), saved["id"])
        except (Unreadable, KeyError, RuntimeError, ValueError, TypeError, AttributeError) as e:
            raise damaged(path, "the audio encoder", str(e), "make the audio features again (avatar-studio-cli "
                                                              "audio)") from e


@dataclass
class WhisperEncoder:
    """faster-whisper's tiny.en encoder states, resampled to the video frames."""

    model_path: Path | None = None
    id: str = "whisper-tiny.en"
    dim: int = 384

    def features(self, audio: np.ndarray, n_frames: int, fps: Fraction, progress: ProgressFn | None = None,
                 cancel: CancelToken | None = None) -> np.ndarray:
        from core.audio.whisper import whisper_features  # loads CTranslate2 only when Whisper is used

        return whisper_features(audio, n_frames, fps, model_path=self.model_path, progress=progress, cancel=cancel)


@dataclass
class ConcatEncoder:
    """Several encoders' features side by side: [T, sum of dims]."""

    parts: tuple[FeatureEncoder, ...]

    @property
    def id(self) -> str:
        return "+".join(p.id for p in self.parts)

    @property
    def dim(self) -> int:
        return sum(p.dim for p in self.parts)

    @property
    def blocks(self) -> tuple[int, ...]:
        """Each part's width, in the order of its columns."""
        return tuple(p.dim for p in self.parts)

    def features(self, audio: np.ndarray, n_frames: int, fps: Fraction, progress: ProgressFn | None = None,
                 cancel: CancelToken | None = None) -> np.ndarray:
        report = progress or (lambda p: None)
        k = len(self.parts)
        return np.concatenate([p.features(audio, n_frames, fps, span(report, i / k, (i + 1) / k), cancel)
                               for i, p in enumerate(self.parts)], axis=1)


def load_encoder(project: Project, config: AudioConfig | None = None) -> FeatureEncoder:
    """The encoder the project's features were made with (or ``config``'s), for new audio."""
    config = config or _saved_config(project)
    if config.encoder == "speech":
        return SpeechEncoder(config.speech_model)
    if config.encoder == "mel":
        return MelEncoder()
    if config.encoder == "whisper":
        return WhisperEncoder()
    if config.encoder == "synctalk":
        if config.synctalk_checkpoint is None:
            raise AvatarStudioError("the synctalk encoder needs the path of SyncTalk's audio_visual_encoder.pth")
        return AveEncoder(import_synctalk_checkpoint(config.synctalk_checkpoint), SYNCTALK_MEL, "synctalk")
    if config.encoder not in TRAINED:
        raise AvatarStudioError(f"unknown audio encoder {config.encoder!r} (choose one of {', '.join(ENCODERS)})")
    path = project.path(ENCODER_FILE)
    if not path.is_file():
        raise ProjectError(path, "no trained audio encoder: run the audio stage first (avatar-studio-cli audio)")
    ave = AveEncoder.load(path)
    return ave if config.encoder == "ave" else ConcatEncoder((ave, WhisperEncoder()))


def load_features(project: Project) -> AudioFeatures:
    """The footage's features saved by the audio stage; ProjectError when missing or corrupt."""
    data = _read_features(project, None, {"features", "encoder", "report"})
    blocks = tuple(int(b) for b in data["blocks"]) if "blocks" in data else ()
    return AudioFeatures(data["features"], str(data["encoder"]), json.loads(str(data["report"])), blocks)


def load_summary(project: Project) -> AudioFeatures:
    """The saved features' encoder, report and training curve, without the features themselves (an empty
    [0,0] array): quick enough to show when a project opens. ProjectError when missing or corrupt."""
    data = _read_features(project, ("encoder", "report", "history"), {"encoder", "report"})
    return AudioFeatures(np.zeros((0, 0), np.float32), str(data["encoder"]), json.loads(str(data["report"])),
                         history=json.loads(str(data["history"])) if "history" in data else [])


def _read_features(project: Project, keys: tuple[str, ...] | None, needs: set[str]) -> dict[str, np.ndarray]:
    """The features file's arrays (those of ``keys``, or all); ProjectError when it is missing, and moved aside
    as damaged when it cannot be read or lacks any of ``needs``."""
    path = project.path(FEATURES_FILE)
    if not path.is_file():
        raise ProjectError(path, "no audio features: run the audio stage first (avatar-studio-cli audio)")
    data = load_npz(path, keys)
    if data is None or not needs <= set(data):
        raise damaged(path, "the audio features", "not a readable features file",
                      "make them again (avatar-studio-cli audio)")
    return data


def _saved_config(project: Project) -> AudioConfig:
    record = project.stages.get(STAGE)
    if record is None:
        raise ProjectError(project.root, "has no audio features yet: run the audio stage first")
    return from_dict(AudioConfig, record.config)


@dataclass
class AudioFeaturesJob:
    """Make the footage's audio features; for the AVE, train it on the footage first (resumable).

    The report scores the features on the held-out last ``train.holdout`` of the frames: ``mouth_r``, the
    Pearson r of a linear readout of the mouth opening (for AVE + Whisper, one readout per encoder, averaged:
    ``mouth_score``), ``mouth_r_ave`` the same from the AVE alone, and for a trained AVE the sync offset it
    finds (``offset_frames``) and its sync margin (``sync_score``).
    """

    project: Project
    config: AudioConfig = AudioConfig()
    name: str = "Audio features"

    @writes_project
    def run(self, progress: ProgressFn, cancel: CancelToken) -> AudioFeatures:
        config = self.config
        if config.encoder not in ENCODERS:
            raise AvatarStudioError(f"unknown audio encoder {config.encoder!r} (choose one of {', '.join(ENCODERS)})")
        if config.encoder == "synctalk":
            config = replace(config, mel=SYNCTALK_MEL)
        # Never features for another footage's tracking; a new speech model makes them again.
        run = begin(self.project, STAGE, to_dict(config),
                    {"speech_model": model_digest(config.speech_model)} if config.encoder == "speech" else None)
        if run.up_to_date:
            try:
                result = load_features(self.project)
                progress(Progress(1.0, "Audio features are up to date"))
                return result
            except ProjectError:
                pass
        footage, tracking = run.footage, load_tracking(self.project)
        fps = Fraction(footage.info["fps"])
        n_frames = len(tracking["landmarks"])
        silent = is_silent(self.project)
        if silent and config.encoder != "speech":
            raise AvatarStudioError(f"the footage has no sound, and the {config.encoder} encoder learns from it: use "
                                    "the speech encoder (the default), which calibrates from the tracked face, or "
                                    "import the footage's sound with 'avatar-studio-cli ingest FOOTAGE --audio SOUND'")
        audio_path = self.project.path(AUDIO_FILE)
        audio = load_audio(audio_path if audio_path.is_file() else footage.path)

        report: dict[str, float] = {}
        history: list[dict[str, float]] = []
        trains = config.encoder in TRAINED
        encoder: FeatureEncoder
        if trains:
            ave, report, history = self._trained_encoder(config, footage.path, audio, fps, tracking,
                                                         span(progress, 0.0, 0.95), cancel)
            encoder = ave if config.encoder == "ave" else ConcatEncoder((ave, WhisperEncoder()))
        else:
            encoder = load_encoder(self.project, config)
        cancel.check(self.name)
        features = encoder.features(audio, n_frames, fps, span(progress, 0.95, 0.99), cancel)
        cancel.check(self.name)
        if config.encoder == "speech" and not silent:
            # The footage's own sound-to-picture offset, removed before the avatar calibrates to its mouths.
            lag, r = footage_offset(features[:, SPEECH_OUTPUTS.index(OPENING)], mouth_opening(tracking["landmarks"]),
                                    round(MAX_OFFSET_S * float(fps)))
            features = shifted(features, lag)
            report.update(offset_frames=float(lag), offset_r=r)
        if "mouth_r" in report:
            report["mouth_r_ave"] = report.pop("mouth_r")
        blocks = encoder.blocks if isinstance(encoder, ConcatEncoder) else ()
        report["mouth_r"] = mouth_score(features, tracking["landmarks"], config.train.holdout, blocks)

        # Everything is computed: the project changes as a whole from here.
        files = [FEATURES_FILE] + ([ENCODER_FILE] if trains else [])  # results; the checkpoint is not one
        if trains:
            ave.save(self.project.path(ENCODER_FILE), report)
        save_npz(self.project.path(FEATURES_FILE), {
            "features": features, "encoder": np.array(encoder.id), "report": np.array(json.dumps(report)),
            "blocks": np.array(blocks, np.int64), "history": np.array(json.dumps(history)),
            "config_json": np.array(json.dumps(to_dict(config), sort_keys=True)),
        })
        run.record(files)
        progress(Progress(1.0, f"Audio features: {n_frames} frames x {encoder.dim} ({encoder.id})"))
        return AudioFeatures(features, encoder.id, report, blocks, history)

    def _trained_encoder(self, config: AudioConfig, video: str, audio: np.ndarray, fps: Fraction,
                         tracking: dict[str, np.ndarray], progress: ProgressFn,
                         cancel: CancelToken) -> tuple[AveEncoder, dict[str, float], list[dict[str, float]]]:
        data = _ave_data(video, audio, fps, tracking["landmarks"], config.mel, span(progress, 0.0, 0.05), cancel)
        trainer, report = train_ave(data, config.train, self.project.path(TRAIN_FILE), span(progress, 0.05, 1.0), cancel)
        return AveEncoder(trainer.audio.eval(), config.mel, "ave"), report, trainer.history


def _ave_data(video: str, audio: np.ndarray, fps: Fraction, landmarks: np.ndarray, mel: MelConfig,
              progress: ProgressFn | None = None, cancel: CancelToken | None = None) -> AveData:
    """What AVE training reads: the footage's lower-face crops and mouth beside ``audio``'s mel."""
    report = progress or (lambda p: None)
    report(Progress(0.0, "Cropping the lower face"))
    with FrameReader(video) as reader:
        crops = lower_face_crops(iter(reader), crop_transforms(landmarks), cancel,
                                 lambda t: report(Progress(t / len(landmarks), "Cropping the lower face")))
    return AveData.build(audio, fps, crops, mouth_targets(landmarks), mel)


def sync_check(project: Project, delay_frames: int) -> dict[str, float]:
    """The trained sync model's held-out report on the footage with its audio delayed by ``delay_frames``
    (negative: advanced). A model that learned lip sync finds ``offset_frames`` = ``delay_frames``."""
    config = _saved_config(project)
    if config.encoder not in TRAINED:
        raise AvatarStudioError(f"the project's audio features ({config.encoder}) have no trained sync model")
    footage = project.checked_footage()
    fps = Fraction(footage.info["fps"])
    audio = load_audio(project.path(AUDIO_FILE))
    shift = round(delay_frames / fps * AUDIO_RATE)
    pad = np.zeros(abs(shift), np.float32)
    delayed = np.concatenate([pad, audio[:len(audio) - shift]]) if shift >= 0 else np.concatenate([audio[-shift:], pad])
    trainer = AveTrainer(_ave_data(footage.path, delayed, fps, load_tracking(project)["landmarks"], config.mel),
                         config.train)
    trainer.load_state_dict(torch.load(project.path(TRAIN_FILE), map_location="cpu", weights_only=True)["trainer"])
    return trainer.evaluate()
