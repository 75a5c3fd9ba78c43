"""Live mode: the avatar speaks what a microphone hears, frame by frame, on worker threads with bounded queues.

    input (PortAudio's thread or a paced file) -> analysis thread: streaming speech model -> lip feature
    -> render threads (each one numba and torch thread: the baked Gaussians, the tile rasterizer, the blend into the
    backdrop) -> presenter thread: frames in order at a steady delay after their sound -> display, recording,
    virtual camera

Frame k shows the mouth of the sound at k/fps. It can be made once the sound up to k/fps plus the model's look-ahead
has arrived; it is shown at a steady delay after its sound arrived (the look-ahead plus a margin for rendering), so
frames come evenly although the speech model works in blocks. The margin adapts, as a call's jitter buffer does: it
grows at once to the slowest recent frames and shrinks slowly while they are quicker. A frame that is not rendered
by then is shown late; a render queue that is full drops its oldest frame (counted), so a busy machine never piles
up latency. The drive is the offline dub's (the same streamed features, the same edited upper face and head pose
over the footage in ping-pong), with the baked deformation (core.avatar.bake) in place of the network.
"""

from __future__ import annotations

import bisect
import math
import os
import queue
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import torch

from core.audio.features import AveEncoder, SpeechEncoder, load_encoder, load_features
from core.audio.stream import StreamingFeatures
from core.avatar.drive import Driver
from core.avatar.views import expression_of
from core.compose.watermark import stamp
from core.dub import in_order, pingpong
from core.errors import AvatarStudioError
from core.expression.edits import edited_performance
from core.jobs import CancelToken, Progress, ProgressFn, span
from core.live.input import AudioSource, open_input
from core.live.outputs import Monitor, TakeRecorder, VirtualCamera
from core.media import AUDIO_RATE, FrameReader
from core.memory import realtime_allocations
from core.options import option
from core.project import Project
from core.speech.frontend import Frontend
from core.speech.lipsync import speech_model
from core.speech.model import SavedModel, live_model
from core.speech.stream import StreamingSpeech
from core.speech.targets import SHAPE_INDEX
from core.threads import saved_threads, single_threaded
from core.tracking.track import load_tracking

BACKDROPS = ("footage", "still", "colour")   # behind the face: the footage in ping-pong, its first frame, a colour
SPEECH_MODELS = ("live", "project")          # the shipped live speech model, or the project's (its dubs')
MAX_MARGIN_S = 0.5                           # the adaptive render margin's ceiling: later frames are shown late


@dataclass(frozen=True)
class LiveConfig:
    backdrop: str = option("footage", "behind the face: the footage in ping-pong, its first frame, or a plain colour",
                           choices=BACKDROPS)
    speech_model: str = option("live", "the live speech model (140 ms from sound to mouth, less computing) or the "
                                       "project's (its dubs' own: 240 ms)", choices=SPEECH_MODELS)
    colour: tuple[int, int, int] = (40, 40, 46)   # the plain backdrop, RGB
    height: int = option(512, "the frames' height in pixels; the width keeps the footage's aspect", metavar="PX")
    render_threads: int = option(2, "frames rendered side by side, each on a thread of its own", metavar="N")
    lookahead: int | None = option(None, "frames of sound past a frame that its mouth waits for (default: all the "
                                         "avatar reads, as the offline dub)", metavar="FRAMES")
    margin_s: float | None = option(None, "time allowed to render a frame once its sound is in (default: adapts "
                                          "to this machine, from 0.1 s)", metavar="S")
    watermark: bool = option(True, "no visible AI-generated mark on the frames")

    def __post_init__(self) -> None:
        if self.speech_model not in SPEECH_MODELS:
            raise ValueError(f"the speech model {self.speech_model!r} is not one of {', '.join(SPEECH_MODELS)}")
        if self.backdrop not in BACKDROPS:
            raise ValueError(f"the backdrop {self.backdrop!r} is not one of {', '.join(BACKDROPS)}")
        if self.height < 64 or self.height % 2:
            raise ValueError(f"the height must be even and at least 64 px, got {self.height}")
        if self.render_threads < 1:
            raise ValueError("live mode needs at least one render thread")
        if self.lookahead is not None and self.lookahead < 0:
            raise ValueError(f"the look-ahead cannot be negative, got {self.lookahead}")
        if self.margin_s is not None and not 0 <= self.margin_s <= 2:
            raise ValueError(f"the render margin must be between 0 and 2 s, got {self.margin_s}")


def next_margin(margin: float, lags: deque[float] | list[float]) -> float:
    """The adaptive render margin after a frame, from the recent frames' lags (seconds each was ready after all
    the sound it reads was in): up at once to cover the slowest of them (the 95th percentile, plus 10 ms; at most
    MAX_MARGIN_S: later frames are shown late rather than delaying all), down by at most a millisecond a frame, so
    that frames never jump ahead visibly. Unchanged until 10 frames are known."""
    if len(lags) < 10:
        return margin
    target = min(max(float(np.percentile(lags, 95)) + 0.01, 0.02), MAX_MARGIN_S)
    return target if target > margin else max(margin - 0.001, target)


@dataclass
class LiveAvatar:
    """Everything a live session drives, loaded and baked once (``prepare``)."""

    project: Project
    driver: Driver
    fps: Fraction
    footage: str                      # the footage's file
    blendshapes: np.ndarray           # float32 [T,52] the edited performance (the upper face, the CSV's other columns)
    expr: np.ndarray                  # float32 [T,E] its expression
    pose: tuple[np.ndarray, np.ndarray] | None   # edited head poses rot [T,3,3], trans [T,3]; None: the tracked ones
    speech: SavedModel | None         # the speech model streamed (None: the project's AVE is)
    ave: AveEncoder | None
    model: str                        # which speech model: one of SPEECH_MODELS

    def stream(self) -> StreamingSpeech | StreamingFeatures:
        if self.speech is None:
            return StreamingFeatures(self.ave, self.fps)
        return StreamingSpeech(self.speech.net, Frontend(self.speech.net.config.frontend), self.fps)

    def features(self, z: np.ndarray) -> np.ndarray:
        """The avatar's audio features [n,D] of streamed rows [n,D] (the speech model's z-scores scaled as the
        speech encoder scales them; the AVE's as they are)."""
        return z if self.speech is None else z / self.speech.net.gain.numpy()

    def mouth_blendshapes(self, z: np.ndarray) -> np.ndarray | None:
        """The speech shapes' values [n,S] (SPEECH_SHAPES, in [0,1]) of the speech model's z-scores [n,K]."""
        return None if self.speech is None else self.speech.net.speech_shapes(z)


def prepare(project: Project, model: str = "live", progress: ProgressFn | None = None,
            cancel: CancelToken | None = None) -> LiveAvatar:
    """Load the project's avatar for live mode and bake its deformation (a few seconds). ``model``: "live" streams
    the shipped live speech model (core.speech.model.LIVE_MODEL: less look-ahead and computing), "project" the one
    the project's features (and its dubs) come from. AvatarStudioError when the project's audio encoder cannot
    stream (the per-clip log-mel, Whisper)."""
    if model not in SPEECH_MODELS:
        raise ValueError(f"the speech model {model!r} is not one of {', '.join(SPEECH_MODELS)}")
    report = progress or (lambda p: None)
    cancel = cancel or CancelToken()
    report(Progress(0.0, "Loading the avatar"))
    encoder = load_encoder(project)
    if not isinstance(encoder, (SpeechEncoder, AveEncoder)):
        raise AvatarStudioError(f"live mode needs an audio encoder that streams (speech, ave or synctalk); this "
                                f"project's is {encoder.id}: make its audio features again with the speech encoder "
                                "(the default)")
    tracking = load_tracking(project)
    driver = Driver.load(project, tracking)
    edited = edited_performance(project, tracking, cancel=cancel)
    report(Progress(0.2, "Baking the avatar for real time"))
    driver.bake(load_features(project).features, cancel=cancel)
    driver.canonical  # computed here, not on the first live frame
    speech = None
    if isinstance(encoder, SpeechEncoder):
        speech = live_model() if model == "live" else speech_model(encoder.model_path)
    report(Progress(1.0, f"{len(driver.baked.kept):,} Gaussians baked"))
    footage = project.checked_footage()
    return LiveAvatar(project, driver, Fraction(footage.info["fps"]),
                      footage.path, edited.blendshapes, expression_of(edited.blendshapes),
                      (edited.rot, edited.trans) if edited.posed else None, speech,
                      encoder if isinstance(encoder, AveEncoder) else None, model)


@dataclass
class LiveStats:
    """What the panel and the CLI show, over the last few seconds (latency, fps) or the whole session."""

    seconds: float = 0.0              # since the session started
    frames: int = 0                   # shown
    dropped: int = 0                  # never shown: the render queue was full
    late: int = 0                     # shown after their due time
    fps: float = 0.0                  # frames shown per second, recent
    latency_ms: float = 0.0           # median, recent: a frame's sound arriving -> the frame shown
    latency_p95_ms: float = 0.0
    cpu: float = 0.0                  # share of the machine's cores this process used, recent
    level_db: float = -120.0          # the input's loudness, dBFS, last 100 ms
    recording: float | None = None    # seconds recorded, None when not recording
    message: str = ""                 # why it stopped, when it stopped on its own


@dataclass
class _Job:
    k: int                            # frame number
    source: int                       # footage frame behind it
    lip: torch.Tensor                 # [A]
    backdrop: np.ndarray              # uint8 [H,W,3] the footage frame (or still, or colour)
    blendshapes: np.ndarray           # float32 [52] what drove it, for the take's CSV
    heard: float                      # perf_counter time its sound arrived


@dataclass
class LiveFrame:
    k: int
    image: np.ndarray                 # uint8 [h,w,3]
    blendshapes: np.ndarray           # float32 [52] what drove it
    heard: float                      # perf_counter time its sound (up to k/fps) arrived
    gaussians: dict[str, torch.Tensor] | None = None   # the Gaussians drawn (a face in view), for the Viewport
    rendered: float = 0.0             # perf_counter time it was ready
    shown: float = 0.0                # perf_counter time it was shown

    @property
    def latency(self) -> float:
        """Seconds from its sound arriving to its showing."""
        return self.shown - self.heard


class LiveSession:
    """One live run: ``start`` it, read ``stats`` and receive frames through ``on_frame`` (any thread: the
    presenter's), ``record``/``stop_recording`` takes (``on_take`` hears of each written, from any thread), ``stop``
    within half a second. The input stopping on its
    own (unplugged) or a file ending stops the session, ``message`` saying why, any recording kept."""

    def __init__(self, avatar: LiveAvatar, source: AudioSource, config: LiveConfig = LiveConfig(),
                 on_frame: Callable[[LiveFrame], None] | None = None,
                 on_stopped: Callable[[str], None] | None = None, virtual_camera: bool = False,
                 on_take: Callable[[list[Path]], None] | None = None):
        if config.speech_model != avatar.model:
            raise ValueError(f"the avatar was prepared for the {avatar.model} speech model, the config asks for the "
                             f"{config.speech_model} one: prepare it with the config's")
        self.avatar, self.source, self.config = avatar, source, config
        self.on_frame, self.on_stopped, self.on_take = on_frame, on_stopped, on_take
        driver = avatar.driver
        self.fps = avatar.fps
        self.n_footage = len(driver.views)
        self.lookahead = driver.model.audio_lookahead if config.lookahead is None else \
            min(config.lookahead, driver.model.audio_lookahead)
        self._speech = avatar.stream()
        self._wait = self._speech.latency_s + self.lookahead / float(self.fps)   # sound -> all a frame reads is in
        self.margin = 0.1 if config.margin_s is None else config.margin_s         # then -> the frame shown
        self._lags: deque[float] = deque(maxlen=50)      # recent frames' ready time past their sound's wait
        with FrameReader(avatar.footage) as reader:
            self.frame_size = reader.size                                          # (W,H) of the footage
            self._still_source = int(np.flatnonzero(driver.views.valid)[0]) if driver.views.valid.any() else 0
            self._still = reader.read(self._still_source) if config.backdrop != "footage" else None
        w, h = self.frame_size
        self.size = (max(2, round(w * config.height / h / 2) * 2), config.height)    # output (W,H)
        self._stopping = threading.Event()
        self._stopped = threading.Event()          # stop has finished: threads told, take written
        self._ended = threading.Event()             # the input has no more sound (a file's end)
        self._audio: deque[tuple[np.ndarray, float]] = deque()
        self._audio_ready = threading.Condition()
        self._received = 0                          # samples in
        self._arrivals: list[tuple[int, float]] = []   # (samples in after a chunk, its arrival time)
        self._jobs: deque[_Job] = deque()
        self._jobs_ready = threading.Condition()
        self._done: dict[int, LiveFrame | None] = {}   # rendered frames (None: dropped) by k
        self._done_ready = threading.Condition()
        self._next_show = 0
        self._recent: deque[tuple[float, float]] = deque()   # (shown, latency) of the last seconds
        self._cpu: deque[tuple[float, float]] = deque()      # (wall, process cpu) samples
        self._level = -120.0
        self._stats = LiveStats()
        self._begun = 0.0
        self._threads: list[threading.Thread] = []
        self._recorder: TakeRecorder | None = None
        self._record_lock = threading.Lock()
        self._vcam, self.virtual_camera_note = VirtualCamera.open(self.size, float(self.fps)) if virtual_camera \
            else (None, "")
        self._footage_frames = _FootageLoop(avatar.footage, self.n_footage) if config.backdrop == "footage" else None
        self.message = ""
        self.last_take: tuple[int, list[Path]] | None = None   # the last take's first frame and files
        self._record_begun = 0.0
        self._monitor: Monitor | None = None

    # -- control ------------------------------------------------------------------------------------------------

    def start(self) -> None:
        self._restore_threads = saved_threads()
        realtime_allocations(True)
        self._begun = time.perf_counter()
        self._cpu.append((self._begun, time.process_time()))
        names = [("live-analysis", self._analyse)] + \
            [(f"live-render-{i}", self._render) for i in range(self.config.render_threads)] + \
            [("live-presenter", self._present)]
        for name, target in names:
            thread = threading.Thread(target=self._guarded(target), name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        self.source.start(self._on_audio, self._failed, self._ended.set)

    def join(self, timeout: float = 5.0) -> None:
        """Wait for the session's threads to end (after ``stop``): before the process exits, so that none is
        inside a native library when it does."""
        end = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(timeout=max(end - time.monotonic(), 0.0))

    def stop(self, message: str = "") -> None:
        """Stop everything (within half a second); a take being recorded is finished and kept."""
        if self._stopping.is_set():
            return
        self.message = self.message or message
        self._stopping.set()
        self.source.stop()
        for cond in (self._audio_ready, self._jobs_ready, self._done_ready):
            with cond:
                cond.notify_all()
        deadline = time.monotonic() + 0.3
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=max(deadline - time.monotonic(), 0.0))
        if self._footage_frames is not None:
            self._footage_frames.close()
        self.stop_recording(wait=False)
        if self._vcam is not None:
            self._vcam.close()
        self.set_monitor(False)
        if self._begun:
            realtime_allocations(False)
            self._restore_threads()
        self._stopped.set()
        if self.on_stopped is not None:
            self.on_stopped(self.message)

    def set_monitor(self, on: bool) -> str:
        """Play the input's sound back as it arrives (or stop); why not, when there is no sound output."""
        if not on:
            monitor, self._monitor = self._monitor, None
            if monitor is not None:
                monitor.close()
            return ""
        if self._monitor is None:
            self._monitor, note = Monitor.open()
            return note
        return ""

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the session has stopped (a file's end, a failure, ``stop``) and its take is written; True
        when it has."""
        return self._stopped.wait(timeout)

    def record(self, mp4: Path, csv: Path | None = None, seconds: float | None = None) -> None:
        """Start recording a take from the sound arriving now: the frames of that sound as shown (H.264) with the
        sound (AAC), and the blendshapes that drove them (``csv``); ``seconds``: it ends by itself after that long
        (its files written, ``on_take`` told). MediaError when the files cannot be written."""
        with self._record_lock:
            if self._recorder is not None:
                raise AvatarStudioError("a take is already being recorded")
            first = math.ceil(self._received / AUDIO_RATE * float(self.fps))
            self._record_begun = time.perf_counter()
            self._recorder = TakeRecorder(Path(mp4), None if csv is None else Path(csv), self.fps, self.size,
                                          self.avatar.project.name, self.source.name, first)
            if seconds is not None:
                self._recorder.end(first + round(seconds * float(self.fps)) - 1)

    def stop_recording(self, wait: bool = True, at: float | None = None) -> list[Path]:
        """End the take as long as it was recorded (wall time: sound that arrives late still belongs to it) and
        write its files; the paths written ([] when no take runs, or another thread is already ending it).
        ``wait``: for its last frames to be shown first (the delay, up to a second more, or until the session
        stops); else the take ends with the frames shown so far. ``at``: the perf_counter time the user stopped
        it (default: now)."""
        with self._record_lock:
            recorder = self._recorder
            if recorder is None or recorder.closing:
                return []
            recorder.closing = True
        if wait and not self._stopping.is_set():
            at = time.perf_counter() if at is None else at
            recorder.end(recorder.first + round((at - self._record_begun) * float(self.fps)) - 1)
            deadline = time.perf_counter() + self.delay + 1.0
            while not recorder.wait(0.05) and not self._stopping.is_set() and time.perf_counter() < deadline:
                pass
        with self._record_lock:
            self._recorder = None
        recorder.end(self._next_show - 1)
        files = recorder.close()
        self.last_take = (recorder.first, files)
        if self.on_take is not None:
            self.on_take(files)
        return files

    @property
    def delay(self) -> float:
        """Seconds from a frame's sound arriving to its showing, when it is rendered in time."""
        return self._wait + self.margin

    @property
    def stats(self) -> LiveStats:
        now = time.perf_counter()
        s = self._stats
        s.seconds = now - self._begun if self._begun else 0.0
        shown_latency, cpu = tuple(self._recent), tuple(self._cpu)   # copies: the presenter appends as we read
        recent = [lat for shown, lat in shown_latency if shown > now - 5.0]
        if recent:
            s.latency_ms = 1e3 * statistics.median(recent)
            s.latency_p95_ms = 1e3 * float(np.percentile(recent, 95))
        window = [shown for shown, _ in shown_latency if shown > now - 2.0]
        s.fps = (len(window) - 1) / (window[-1] - window[0]) if len(window) > 2 and window[-1] > window[0] else 0.0
        if len(cpu) > 1:
            (w0, c0), (w1, c1) = cpu[0], cpu[-1]
            s.cpu = (c1 - c0) / max(w1 - w0, 1e-9) / (os.cpu_count() or 1)
        s.level_db = self._level
        recorder = self._recorder
        s.recording = None if recorder is None else recorder.seconds
        s.message = self.message
        return s

    # -- threads ------------------------------------------------------------------------------------------------

    def _guarded(self, target: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            single_threaded()
            try:
                target()
            except Exception as e:  # a thread that fails stops the session with its reason
                self.stop(f"live mode stopped: {e}")
        return run

    def _on_audio(self, chunk: np.ndarray, arrived: float) -> None:
        """The input's thread: keep the chunk for the analysis thread, the take and the level meter."""
        if self._stopping.is_set():
            return
        with self._audio_ready:
            self._audio.append((chunk, arrived))
            self._received += len(chunk)
            self._arrivals.append((self._received, arrived))
            self._audio_ready.notify()
        if len(chunk):
            self._level = 0.7 * self._level + 0.3 * 20 * np.log10(max(float(np.sqrt(np.mean(chunk ** 2))), 1e-6))
        recorder, monitor = self._recorder, self._monitor
        if recorder is not None:
            recorder.add_audio(chunk, self._received - len(chunk))
        if monitor is not None:
            monitor.play(chunk)

    def _failed(self, message: str) -> None:
        threading.Thread(target=self.stop, args=(message,), daemon=True).start()

    def arrival(self, sample: int) -> float:
        """When the input's sample ``sample`` arrived (its chunk's arrival)."""
        with self._audio_ready:
            i = bisect.bisect_right(self._arrivals, (sample, float("inf")))
            found = self._arrivals[min(i, len(self._arrivals) - 1)][1]
            del self._arrivals[:max(i - 1, 0)]                  # earlier frames are all asked for
        return found

    def _analyse(self) -> None:
        """Sound -> streamed features -> each frame's lip feature, once the sound it reads is in."""
        model = self.avatar.driver.model
        keep = model.audio_frames + self.lookahead + 1
        rows: deque[np.ndarray] = deque(maxlen=keep)       # the latest features [D], of frames known-len .. known-1
        z_rows: deque[np.ndarray] = deque(maxlen=keep)     # and the speech model's z-scores [K]
        known = k = 0
        while not self._stopping.is_set():
            with self._audio_ready:
                while not self._audio and not self._ended.is_set() and not self._stopping.is_set():
                    self._audio_ready.wait(0.05)
                chunks = list(self._audio)
                self._audio.clear()
            ended = self._ended.is_set() and not chunks
            if chunks:
                out = self._speech.push(np.concatenate([c for c, _ in chunks]))
            elif ended:
                out = self._speech.flush()
            else:
                continue
            for z, row in zip(out, self.avatar.features(out)):
                z_rows.append(z)
                rows.append(row)
                known += 1
                while k + self.lookahead < known:       # frame k's sound is all in
                    self._queue(k, rows, z_rows, known)
                    k += 1
            if ended:
                while k < known:
                    self._queue(k, rows, z_rows, known, wait=True)
                    k += 1
                self._finish(k)
                return

    def _queue(self, k: int, rows: deque, z_rows: deque, known: int, wait: bool = False) -> None:
        """Frame k's job for the render threads; when they are behind, the oldest waiting one is dropped (or, with
        ``wait``, at the input's end, this waits for room: no sound follows to fall behind)."""
        model, avatar = self.avatar.driver.model, self.avatar
        first_row = known - len(rows)
        first = k - model.audio_frames // 2
        idx = np.clip(np.arange(first, first + model.audio_frames), 0, known - 1) - first_row   # ends repeated
        lip = avatar.driver.lip(np.stack([rows[i] for i in idx]))                               # [A]
        source = int(pingpong(k, self.n_footage)) if self._footage_frames is not None else self._still_source
        backdrop = self._footage_frames.frame(k) if self._footage_frames is not None else self._still
        blendshapes = avatar.blendshapes[source].copy()
        mouth = avatar.mouth_blendshapes(z_rows[k - first_row][None])
        if mouth is not None:
            blendshapes[SHAPE_INDEX] = mouth[0]
        heard = self.arrival(round(k / float(self.fps) * AUDIO_RATE))
        with self._jobs_ready:
            while wait and len(self._jobs) >= 2 * self.config.render_threads and not self._stopping.is_set():
                self._jobs_ready.wait(0.05)
            if len(self._jobs) >= 2 * self.config.render_threads:     # full: the oldest frame is dropped
                self._mark(self._jobs.popleft().k, None)
            self._jobs.append(_Job(k, source, lip, backdrop, blendshapes, heard))
            self._jobs_ready.notify()

    def _finish(self, end: int) -> None:
        """The input is over: show what is queued, then stop."""
        while not self._stopping.is_set() and self._next_show < end:
            time.sleep(0.02)
        self.stop(self.message or f"{self.source.name} ended")

    def _render(self) -> None:
        driver, avatar, config = self.avatar.driver, self.avatar, self.config
        while not self._stopping.is_set():
            with self._jobs_ready:
                while not self._jobs and not self._stopping.is_set():
                    self._jobs_ready.wait(0.05)
                if self._stopping.is_set():
                    return
                job = self._jobs.popleft()
                self._jobs_ready.notify_all()
            s = job.source
            expr = avatar.expr[s]
            pose = None if avatar.pose is None else (avatar.pose[0][s], avatar.pose[1][s])
            gaussians = None
            if driver.views.valid[s]:
                gaussians = driver.gaussians(job.lip, expr)
                if config.backdrop == "colour":
                    image = self._on_colour(s, gaussians, pose)
                else:
                    image = driver.blend(job.backdrop, s, gaussians, pose)
            else:
                image = job.backdrop
            if image.shape[1::-1] != self.size:
                image = cv2.resize(image, self.size, interpolation=cv2.INTER_AREA)
            if config.watermark:
                image = stamp(image)
            self._mark(job.k, LiveFrame(job.k, image, job.blendshapes, job.heard, gaussians, time.perf_counter()))

    def _on_colour(self, s: int, gaussians: dict[str, torch.Tensor], pose) -> np.ndarray:
        driver = self.avatar.driver
        rgb, alpha = driver.draw(s, gaussians, pose)                                     # [S,S,3], [S,S]
        w, h = self.frame_size
        colour = np.array(self.config.colour, np.float32) / 255.0
        face = driver.views.crops.paste(rgb, s, (w, h))                                  # [H,W,3]
        cover = driver.views.crops.paste(np.repeat(alpha[..., None], 3, 2), s, (w, h))   # [H,W,3]
        return np.clip(255.0 * (face + (1.0 - cover) * colour), 0, 255).astype(np.uint8)

    def _mark(self, k: int, frame: LiveFrame | None) -> None:
        with self._done_ready:
            if k >= self._next_show:
                self._done[k] = frame
                self._done_ready.notify()
            if frame is None:
                self._stats.dropped += 1

    def _present(self) -> None:
        """Frames in order, each at its due time (or as soon as it is rendered, when late)."""
        while not self._stopping.is_set():
            with self._done_ready:
                while self._next_show not in self._done and not self._stopping.is_set():
                    self._done_ready.wait(0.05)
                if self._stopping.is_set():
                    return
                k = self._next_show
                frame = self._done.pop(k)
                self._next_show += 1
            if frame is None:
                self._show_gap(k)
                continue
            self._adapt(frame)
            due = frame.heard + self.delay
            wait = due - time.perf_counter()
            if wait > 0 and self._stopping.wait(wait):
                return
            frame.shown = time.perf_counter()
            if frame.shown > due + 0.5 / float(self.fps):
                self._stats.late += 1
            self._show(frame)

    def _adapt(self, frame: LiveFrame) -> None:
        if self.config.margin_s is None:
            self._lags.append(frame.rendered - frame.heard - self._wait)
            self.margin = next_margin(self.margin, self._lags)

    def _show(self, frame: LiveFrame) -> None:
        self._stats.frames += 1
        self._recent.append((frame.shown, frame.latency))
        while self._recent and self._recent[0][0] < frame.shown - 6.0:
            self._recent.popleft()
        self._cpu.append((frame.shown, time.process_time()))
        while len(self._cpu) > 2 and self._cpu[0][0] < frame.shown - 3.0:
            self._cpu.popleft()
        recorder = self._recorder
        if recorder is not None:
            recorder.add_frame(frame.k, frame.image, frame.blendshapes)
            if recorder.complete and not recorder.closing:   # a timed take is over: written off this thread
                threading.Thread(target=self._finish_take, args=(recorder,), name="live-take-end", daemon=True).start()
        if self._vcam is not None:
            self._vcam.send(frame.image)
        if self.on_frame is not None:
            self.on_frame(frame)

    def _finish_take(self, recorder: TakeRecorder) -> None:
        if self._recorder is recorder:
            self.stop_recording(wait=False)     # a no-op when another thread is ending it already

    def _show_gap(self, k: int) -> None:
        """Frame k was dropped: a take repeats the frame before in its place."""
        recorder = self._recorder
        if recorder is not None:
            recorder.add_frame(k, None, None)


class _FootageLoop:
    """The footage's frames in ping-pong order (0, 1, .., n-1, n-2, .., 0, 1, ..), decoded ahead on a thread of its
    own into a short queue: memory holds a few frames whatever the footage's length."""

    def __init__(self, path: str, n: int, ahead: int = 8):
        self._queue: queue.Queue[tuple[int, np.ndarray] | BaseException] = queue.Queue(maxsize=ahead)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._decode, args=(path, n), name="live-footage", daemon=True)
        self._thread.start()

    def _decode(self, path: str, n: int) -> None:
        single_threaded()
        k = 0
        try:
            with FrameReader(path, cache_bytes=0) as reader:
                while not self._stopping.is_set():
                    for _, frame in in_order(reader, list(pingpong(np.arange(k, k + max(2 * (n - 1), 1)), n))):
                        if not self._put((k, frame)):
                            return
                        k += 1
        except Exception as e:  # the footage cannot be read: the analysis thread says so
            self._put(e)

    def _put(self, item) -> bool:
        while not self._stopping.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def frame(self, k: int) -> np.ndarray:
        """Frame k of the loop (called with k = 0, 1, 2, ... in turn)."""
        while True:
            item = self._queue.get(timeout=10.0)
            if isinstance(item, BaseException):
                raise AvatarStudioError(f"the footage cannot be read for the backdrop: {item}") from item
            if item[0] == k:
                return item[1]

    def close(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=0.3)


@dataclass
class LiveRun:
    """What ``LiveJob`` returns: the session's figures and the files it wrote."""

    stats: LiveStats
    files: list[Path] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)   # every shown frame's, s
    shown: list[float] = field(default_factory=list)       # when each was shown (perf_counter), s
    first_frame: int | None = None                          # the take's first frame (its sound's time x fps)


@dataclass
class LiveJob:
    """Headless live mode (the CLI, benchmarks): from ``input`` (a device, or a sound file played in real time;
    core.live.input.open_input) until it ends, ``seconds`` pass or the job is cancelled, recording the whole session
    when ``record`` (and ``csv``) are given."""

    project: Project
    input: str | None = None
    config: LiveConfig = LiveConfig()
    record: Path | None = None
    csv: Path | None = None
    seconds: float | None = None
    virtual_camera: bool = False
    name: str = "Live"

    def run(self, progress: ProgressFn, cancel: CancelToken) -> LiveRun:
        restore_threads = saved_threads()
        try:
            return self._run(progress, cancel)
        finally:
            restore_threads()

    def _run(self, progress: ProgressFn, cancel: CancelToken) -> LiveRun:
        single_threaded()
        source = open_input(self.input)
        avatar = prepare(self.project, self.config.speech_model, span(progress, 0.0, 0.2), cancel)
        latencies: list[float] = []
        shown: list[float] = []

        def on_frame(frame: LiveFrame) -> None:
            latencies.append(frame.latency)
            shown.append(frame.shown)

        session = LiveSession(avatar, source, self.config, on_frame=on_frame, virtual_camera=self.virtual_camera)
        if session.virtual_camera_note:
            progress(Progress(0.2, session.virtual_camera_note))
        if self.record is not None:
            session.record(self.record, self.csv)
        session.start()
        try:
            while not session.wait(0.5):
                s = session.stats
                progress(Progress(0.2 if self.seconds is None else 0.2 + 0.8 * min(s.seconds / self.seconds, 1.0),
                                  f"{s.frames} frames · {s.fps:.1f} fps · latency {s.latency_ms:.0f} ms · "
                                  f"{s.dropped} dropped", {"fps": s.fps, "latency_ms": s.latency_ms}))
                if (self.seconds is not None and s.seconds >= self.seconds) or cancel.cancelled:
                    session.stop_recording()
                    break
        finally:
            session.stop()
            session.join()
        first, files = session.last_take or (None, [])
        stats = session.stats
        progress(Progress(1.0, f"Live: {stats.frames} frames in {stats.seconds:.1f} s"
                               + (f" ({stats.message})" if stats.message else "")))
        return LiveRun(stats, files, latencies, shown, first)
