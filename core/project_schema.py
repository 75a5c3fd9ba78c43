"""What a valid project.json holds, checked on open with one message per problem, so a hand-edited or damaged
file ends in a list of what is wrong and where, never in a traceback or a failure later."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any

TOP = {"format", "version", "name", "created", "modified", "footage", "stages", "view"}
FOOTAGE = {"path", "sha256", "size", "mtime", "info"}
RECORD = {"files", "config", "inputs", "created", "fingerprints"}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and math.isfinite(v)


def _fps_ok(v: Any) -> bool:
    try:
        return isinstance(v, str) and Fraction(v) > 0
    except (ValueError, ZeroDivisionError):
        return False


def _plain_name(v: Any) -> bool:
    """A file name inside the project folder: relative, no parent steps, no drive."""
    if not isinstance(v, str) or not v or v.startswith(("/", "\\")):
        return False
    parts = PurePosixPath(v).parts + PureWindowsPath(v).parts
    return ".." not in parts and not PureWindowsPath(v).drive


def problems(d: dict[str, Any]) -> list[str]:
    """Everything wrong with a project.json's content (already JSON-decoded, format and version checked)."""
    out: list[str] = []

    def check(ok: bool, where: str, what: str) -> bool:
        if not ok:
            out.append(f"{where}: {what}")
        return ok

    out += [f"{k}: unknown field" for k in sorted(set(d) - TOP)]
    for key in ("name", "created", "modified"):
        check(isinstance(d.get(key), str), key, "must be text" if key in d else "missing")
    footage = d.get("footage")
    if footage is not None and check(isinstance(footage, dict), "footage", "must be an object or null"):
        out += [f"footage.{k}: unknown field" for k in sorted(set(footage) - FOOTAGE)]
        check(isinstance(footage.get("path"), str) and footage.get("path") != "", "footage.path", "must be a path")
        sha = footage.get("sha256")
        check(isinstance(sha, str) and len(sha) == 64 and all(c in "0123456789abcdef" for c in sha),
              "footage.sha256", "must be 64 hex digits")
        check(_is_int(footage.get("size")) and footage["size"] >= 0, "footage.size", "must be a byte count")
        check(_is_number(footage.get("mtime")), "footage.mtime", "must be a number")
        info = footage.get("info")
        if check(isinstance(info, dict), "footage.info", "must be an object"):
            out += _info_problems(info)
    stages = d.get("stages", {})
    if check(isinstance(stages, dict), "stages", "must be an object of stage records"):
        for name, rec in stages.items():
            where = f"stages.{name}"
            if not check(isinstance(rec, dict), where, "must be an object"):
                continue
            out += [f"{where}.{k}: unknown field" for k in sorted(set(rec) - RECORD)]
            files = rec.get("files")
            check(isinstance(files, list) and all(_plain_name(f) for f in files), f"{where}.files",
                  "must be a list of file names inside the project folder")
            check(isinstance(rec.get("config"), dict), f"{where}.config", "must be an object")
            inputs = rec.get("inputs", {})
            check(isinstance(inputs, dict) and all(isinstance(v, str) for v in inputs.values()), f"{where}.inputs",
                  "must map names to text")
            check(isinstance(rec.get("created", ""), str), f"{where}.created", "must be text")
            prints = rec.get("fingerprints", {})
            check(isinstance(prints, dict) and all(
                isinstance(v, list) and len(v) == 2 and all(_is_int(x) and x >= 0 for x in v)
                for v in prints.values()), f"{where}.fingerprints", "must map file names to [size, mtime_ns]")
    view = d.get("view", {})
    if check(isinstance(view, dict), "view", "must be an object"):
        check("frame" not in view or (_is_int(view["frame"]) and view["frame"] >= 0), "view.frame",
              "must be a frame number")
    return out


def _info_problems(info: dict[str, Any]) -> list[str]:
    out: list[str] = []

    def check(ok: bool, key: str, what: str) -> None:
        if not ok:
            out.append(f"footage.info.{key}: {what}")

    for key in ("width", "height", "frame_count"):
        check(_is_int(info.get(key)) and info[key] > 0, key, "must be a positive whole number")
    check(_fps_ok(info.get("fps")), "fps", 'must be a positive frame rate such as "25/1"')
    check(_is_number(info.get("duration")) and info["duration"] > 0, "duration", "must be a positive number of seconds")
    for key in ("video_codec", "container"):
        check(isinstance(info.get(key), str), key, "must be text")
    audio = info.get("audio")
    if not isinstance(audio, list):
        check(False, "audio", "must be a list of audio tracks (empty for silent footage)")
        return out
    for i, a in enumerate(audio):
        if not isinstance(a, dict):
            check(False, f"audio[{i}]", "must be an object")
            continue
        check(_is_int(a.get("index")) and a["index"] >= 0, f"audio[{i}].index", "must be a stream number")
        check(isinstance(a.get("codec"), str), f"audio[{i}].codec", "must be text")
        for key in ("sample_rate", "channels"):
            check(_is_int(a.get(key)) and a[key] > 0, f"audio[{i}].{key}", "must be a positive whole number")
        check(_is_number(a.get("duration")) and a["duration"] >= 0, f"audio[{i}].duration",
              "must be a number of seconds")
    return out
