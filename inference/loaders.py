"""Loading weights: TorchScript, state_dict + named architecture, and MONAI bundles.

A MONAI bundle (``configs/inference.json`` + ``models/model.pt`` or ``models/model.ts``) is
trusted code: its ``network_def`` is instantiated by MONAI's ``ConfigParser`` which imports
whatever ``_target_`` names. Only install bundles from a trusted source.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .architectures import build_network
from .cards import CARD_FILE, ModelCard, load_card, parse_card, sha256_file, verify_weights
from .errors import ModelCardError, ModelLoadError

BUNDLE_CONFIG = Path("configs") / "inference.json"
BUNDLE_METADATA = Path("configs") / "metadata.json"


@dataclass
class LoadedModel:
    """A network ready for inference on ``device``, with its card."""

    card: ModelCard
    directory: Path
    network: torch.nn.Module
    device: torch.device


def is_bundle(model_dir: Path) -> bool:
    return (model_dir / BUNDLE_CONFIG).is_file()


def read_card(model_dir: Path) -> ModelCard:
    """The card of a model directory; for a bundle without ``model.yaml``, one built from
    ``configs/metadata.json`` with the weights' digest computed now (so it pins what is there).
    """
    if (model_dir / CARD_FILE).is_file() or not is_bundle(model_dir):
        return load_card(model_dir)
    return bundle_card(model_dir)


def bundle_card(model_dir: Path) -> ModelCard:
    """A generic card for a MONAI bundle directory that has no ``model.yaml``."""
    meta: dict[str, Any] = {}
    if (model_dir / BUNDLE_METADATA).is_file():
        meta = json.loads((model_dir / BUNDLE_METADATA).read_text(encoding="utf-8"))
    weights = _bundle_weights(model_dir)
    name = str(meta.get("name") or model_dir.name)
    slug = re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip("-") or "bundle"
    fmt = meta.get("network_data_format", {})
    image = fmt.get("inputs", {}).get("image", {})
    outputs = fmt.get("outputs", {}).get("pred", {})
    channel_def = outputs.get("channel_def") or {"0": "output"}
    shape = tuple(s for s in image.get("spatial_shape", []) if isinstance(s, int)) or None
    return parse_card(
        {
            "id": slug,
            "version": str(meta.get("version", "0")),
            "name": name,
            "task": "generic",
            "modality": str(image.get("modality", "unknown")),
            "intended_use": str(meta.get("description", "MONAI bundle")),
            "not_for_clinical_use": True,
            "license": str(meta.get("license", "unknown")),
            "input": {"channels": int(image.get("num_channels", 1)), "spatial_shape": shape},
            "weights": {
                "format": "monai_bundle",
                "files": [
                    {"path": str(weights.relative_to(model_dir)), "sha256": sha256_file(weights)}
                ],
            },
            "labels": [
                {"key": f"channel{k}", "name": str(v),
                 "code": {"value": "unknown", "scheme": "99LOCAL", "meaning": str(v)}}
                for k, v in sorted(channel_def.items())
            ],
        },
        f"{model_dir}/{BUNDLE_METADATA}",
    )


def _bundle_weights(model_dir: Path) -> Path:
    for name in ("model.ts", "model.pt"):
        if (model_dir / "models" / name).is_file():
            return model_dir / "models" / name
    raise ModelCardError(f"bundle {model_dir}: no models/model.pt or models/model.ts")


def load_model(model_dir: Path, device: torch.device, verify: bool = True) -> LoadedModel:
    """Load the network of a card-described or bundle directory, in eval mode on ``device``.

    Raises:
        ModelCardError: invalid card or bundle config.
        ChecksumError: a weights digest differs from the card (when ``verify``).
        ModelLoadError: the weights do not fit the architecture (strict loading).
    """
    card = read_card(model_dir)
    if verify:
        verify_weights(card, model_dir)
    fmt = card.weights.format
    weights = model_dir / card.weights.files[0].path
    try:
        if fmt == "torchscript" or weights.suffix == ".ts":
            network: torch.nn.Module = torch.jit.load(str(weights), map_location=device)
        elif fmt == "state_dict":
            if card.architecture is None:
                raise ModelCardError(f"{card.id}: state_dict weights need an architecture")
            network = build_network(card.architecture.name, card.architecture.params)
            _load_state(network, weights)
        elif fmt == "monai_bundle":
            network = _bundle_network(model_dir)
            _load_state(network, weights)
        else:
            raise ModelCardError(f"{card.id}: format {fmt} is loaded by its own adapter")
    except (RuntimeError, OSError, EOFError) as exc:
        raise ModelLoadError(f"{card.id}: cannot load {weights.name}: {exc}") from exc
    network.to(device).eval()
    return LoadedModel(card=card, directory=model_dir, network=network, device=device)


def _load_state(network: torch.nn.Module, weights: Path) -> None:
    # weights_only: a state_dict never needs pickled code; refuse anything else.
    state = torch.load(str(weights), map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    network.load_state_dict(state, strict=True)


def _bundle_network(model_dir: Path) -> torch.nn.Module:
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(model_dir / BUNDLE_CONFIG))
    parser["bundle_root"] = str(model_dir)
    if "network_def" not in parser.config:  # type: ignore[operator]
        raise ModelCardError(f"bundle {model_dir}: {BUNDLE_CONFIG} has no network_def")
    network = parser.get_parsed_content("network_def", instantiate=True)
    if not isinstance(network, torch.nn.Module):
        raise ModelCardError(f"bundle {model_dir}: network_def is not a torch module")
    return network
