"""Configuration of the inference side: the ``inference`` section of the node's settings."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from .registry import ModelRegistry

_PROJECT = Path(__file__).resolve().parents[1]
"""The checkout the package runs from: the committed demo models live in its `models/`, the
BLAST-CT weights beside it in `../shared/models/` (data, never committed)."""


class InferenceConfig(BaseModel):
    """Where models live and where they run."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model_paths: tuple[Path, ...] = Field(
        default=(_PROJECT / "models", _PROJECT.parent / "shared" / "models" / "blast-ct-v1"),
        description="model directories, or folders of model directories; missing ones are "
        "skipped with a warning (BLAST-CT weights live outside the project)",
    )
    device: str = Field(default="auto", description="auto | cpu | cuda | cuda:N")
    warmup: bool = Field(default=True, description="run one forward pass when a model loads")


def build_registry(cfg: InferenceConfig) -> ModelRegistry:
    """The process's registry (call once, pass it around)."""
    # Imported here: the registry pulls in torch, which the settings alone must not.
    from .registry import ModelRegistry

    return ModelRegistry(cfg.model_paths, device=cfg.device, warmup=cfg.warmup)
