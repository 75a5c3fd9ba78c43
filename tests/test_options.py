"""Config dataclasses are the CLI: options, defaults and choices come from the code's own tables."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.options import add_options, from_args, option


@dataclass(frozen=True)
class Toy:
    size: str = option("small", "how big", choices={"small": "a little", "large": "a lot"})
    limit: float | None = option(None, "at most this (default none)", metavar="X")
    sound: Path | None = option(None, "a file", flag="--audio")
    watermark: bool = option(True, "no mark")
    verbose: bool = option(False, "say more")
    internal: int = 3  # not an option


def parse(cls, argv, defaults=None):
    p = argparse.ArgumentParser()
    add_options(p, cls, defaults)
    return p, p.parse_args(argv)


def test_fields_become_options_and_come_back_as_the_config():
    _, args = parse(Toy, [])
    assert from_args(Toy, args) == Toy()
    _, args = parse(Toy, ["--size", "large", "--limit", "2.5", "--audio", "a.wav", "--no-watermark", "--verbose"])
    assert from_args(Toy, args) == Toy(size="large", limit=2.5, sound=Path("a.wav"), watermark=False, verbose=True)
    assert from_args(Toy, args, Toy(internal=7)).internal == 7  # fields that are no options keep the base's
    p, _ = parse(Toy, [])
    text = " ".join(p.format_help().split())
    assert "small: a little; large: a lot (default: small)" in text and "--internal" not in text
    with pytest.raises(SystemExit):
        parse(Toy, ["--size", "huge"])


def test_the_cli_reads_choices_and_defaults_from_the_code():
    from core.audio.features import ENCODERS, AudioConfig
    from core.avatar.config import DEFAULT_PRESET, PRESETS
    from core.cli import build_parser
    from core.dub import SIZES, DubConfig
    from core.ingest import IngestConfig

    p = build_parser()
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction)).choices

    def action(command, dest):
        return next(a for a in sub[command]._actions if a.dest == dest)

    assert action("audio", "encoder").choices == list(ENCODERS)
    assert action("dub", "size").choices == list(SIZES)
    assert action("train", "preset").choices == list(PRESETS) and action("train", "preset").default == DEFAULT_PRESET
    args = p.parse_args(["dub", "--project", "p", "--audio", "a.wav", "--out", "o.mp4"])
    assert from_args(DubConfig, args) == DubConfig()
    args = p.parse_args(["audio", "--project", "p"])
    assert from_args(AudioConfig, args) == AudioConfig()
    args = p.parse_args(["ingest", "f.mp4", "--project", "p", "--audio", "s.wav", "--offset", "0.2"])
    assert from_args(IngestConfig, args) == IngestConfig(sound=Path("s.wav"), offset=0.2)
