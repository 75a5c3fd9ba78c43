"""Every file a project folder holds, named in one place: the stages, the studio and the tests read them here."""

PROJECT_FILE = "project.json"          # the project: footage reference, stage records, view state
LOCK_FILE = ".lock"                    # held by the one process that writes into the project
LOCK_INFO_FILE = ".lock.json"          # who holds it: PID, what for, since when
LOG_FILE = "errors.log"                # tracebacks of unexpected errors, for a bug report
AUDIO_FILE = "audio_16k.wav"           # ingest: the footage's speech, 16 kHz mono
TRACKING_FILE = "tracking.npz"         # tracking: landmarks, blendshapes, stabilized head pose per frame
LANDMARKS_FILE = "landmarks.npz"       # tracking: the landmark detector's output, kept to skip it next time
KEYPOINTS_FILE = "stabilizer_keypoints.npz"  # tracking: the stabilizer's keypoint tracks, to re-stabilize
FEATURES_FILE = "audio_features.npz"   # audio: one feature vector per video frame
ENCODER_FILE = "ave.pt"                # audio: the audio-visual encoder trained on the footage
TRAIN_FILE = "ave_train.pt"            # audio: that encoder's resumable training state
AVATAR_FILE = "avatar.pt"              # avatar: the trained avatar
CHECKPOINT_FILE = "avatar_train.pt"    # avatar: the resumable training state
TORSO_FILE = "torso.pt"                # torso: the Torso Restorer trained on the footage
TORSO_CHECKPOINT_FILE = "torso_train.pt"  # torso: its resumable training state
AVATARS_DIR = "avatars"                # avatars kept when another run replaced them (core.avatar.archive)
EVAL_FILE = "eval.json"                # evaluation of the audio-driven avatar on the held-out frames
VIDEO_FILE = "eval.mp4"                # its side-by-side video
EDITS_FILE = "expression_edits.npz"    # an imported take: the performance the edits start from
KEYS_FILE = "expression_keys.json"     # keyframed expression and pose edits, with their undo history
POSE_FILE = "pose_restabilized.npz"    # the head pose stabilized at the edits' strength
TRACKED_CSV_FILE = "tracked_blendshapes.csv"  # the tracked face as a Live Link Face CSV


def eval_files(mouth: str) -> tuple[str, str]:
    """The report's and the side-by-side video's names for an evaluation whose lips ``mouth`` drives."""
    return (EVAL_FILE, VIDEO_FILE) if mouth == "audio" else (f"eval_{mouth}.json", f"eval_{mouth}.mp4")
