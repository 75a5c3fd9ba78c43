"""Avatar training's config and its presets: the dataclass the CLI, the studio and the saved avatar share."""

from __future__ import annotations

from dataclasses import dataclass

from core.avatar.gaussians import InitConfig
from core.avatar.model import AvatarConfig
from core.errors import AvatarStudioError


@dataclass(frozen=True)
class TrainConfig:
    preset: str = "cpu-draft"
    backend: str = "cpu"               # the rasterizer: "cpu" (ours) or "cuda" (gsplat)
    crop_size: int = 256               # render resolution, pixels per side of the face crop
    crop_margin: float = 1.5           # crop side over the largest face-oval extent
    avatar: AvatarConfig = AvatarConfig(init=InitConfig(n_gaussians=10_000))
    max_gaussians: int = 20_000
    stage1_steps: int = 1500           # cpu-draft: both stages within the 20-minute budget (benchmarks/train.py)
    stage2_steps: int = 3000
    dssim_weight: tuple[float, float] = (0.2, 0.4)   # per stage; L1 takes the rest
    mouth_weight: float = 5.0          # extra L1 weight of the lips' box
    eye_weight: float = 5.0            # extra L1 weight of each eye's box
    rare_expression_boost: float = 3.0  # frames are drawn with odds 1 + boost x how far their upper face is from
                                       # the clip's usual one (over its mean distance): blinks are rare in a clip
    lip_weight: float = 0.05           # stage 2: the lip feature must predict the tracked mouth (MSE, z-scores)
    lr_means: float = 2e-3             # cm per step, decayed to 1% by the end (3DGS's schedule)
    lr_quats: float = 1e-3
    lr_scales: float = 5e-3
    lr_opacity: float = 5e-2
    lr_colors: float = 2.5e-3
    lr_triplane: float = 1e-2
    lr_networks: float = 1e-3
    densify_every: int = 100           # stage 1 only, from densify_every until densify_until of stage 1
    densify_until: float = 0.7
    densify_grow: float = 0.1          # at most this fraction of N added per densification
    split_scale: float = 0.15          # cm: above it a chosen Gaussian splits in two, below it is cloned
    prune_opacity: float = 0.005
    holdout: float = 0.2               # the clip's last fraction, never trained on
    checkpoint_every: int = 100
    report_every: int = 10             # loss/PSNR curve points
    preview_every: int = 100           # preview images
    seed: int = 0

    @property
    def steps(self) -> int:
        return self.stage1_steps + self.stage2_steps

    def __post_init__(self) -> None:
        if self.backend not in ("cpu", "cuda"):
            raise ValueError(f"backend must be 'cpu' or 'cuda', got {self.backend!r}")
        if self.stage1_steps < 0 or self.stage2_steps < 0 or self.steps == 0:
            raise ValueError("training needs at least one step")


PRESETS: dict[str, TrainConfig] = {
    # A CPU draft: 256² crops, 10k Gaussians densified up to 20k, our rasterizer.
    "cpu-draft": TrainConfig(),
    # The paper's setting on a GPU: 512² crops, more Gaussians and steps, gsplat.
    "gpu-quality": TrainConfig(preset="gpu-quality", backend="cuda", crop_size=512, max_gaussians=100_000,
                               avatar=AvatarConfig(init=InitConfig(n_gaussians=40_000)),
                               stage1_steps=6000, stage2_steps=8000, checkpoint_every=500, preview_every=250),
    # For tests: a few seconds on a CPU.
    "tiny": TrainConfig(preset="tiny", crop_size=64, max_gaussians=1200,
                        avatar=AvatarConfig(init=InitConfig(n_gaussians=1000)),
                        stage1_steps=12, stage2_steps=12, densify_every=4, checkpoint_every=5,
                        report_every=1, preview_every=4),
}


DEFAULT_PRESET = "cpu-draft"


def describe(name: str) -> str:
    """What a preset costs, for the CLI's help and the studio's preset box."""
    c = PRESETS[name]
    return (f"{c.crop_size}² crops, up to {c.max_gaussians:,} Gaussians, {c.steps:,} steps, "
            f"{'gsplat on CUDA' if c.backend == 'cuda' else 'on the CPU'}")


def preset(name: str) -> TrainConfig:
    if name not in PRESETS:
        raise AvatarStudioError(f"unknown training preset {name!r} (choose one of {', '.join(PRESETS)})")
    return PRESETS[name]
