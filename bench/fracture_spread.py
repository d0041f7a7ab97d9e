"""Calibration figures for the fracture card's mirror-image check: the spread |p - p'| of the
image-level fracture probability between each radiograph and its left-right mirror, over the
held-out radiograph phantom family (the card's `metrics` sample: 80 images, seed 20261205),
and how many calls would change. The card's `uncertainty.max_probability_spread` is set from
its 99th percentile (docs/MODELS.md).

    .venv/bin/python bench/fracture_spread.py [--n 80] [--seed 20261205] [--model-dir models]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# bench/inference.py would shadow the inference package: drop this folder from the path
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from inference.cards import load_card  # noqa: E402
from inference.evaluation.detection import phantom_detection_cases  # noqa: E402
from inference.fracture.pipeline import FracturePipeline  # noqa: E402
from inference.registry import ModelRegistry  # noqa: E402
from inference.uncertainty import mirrored_images  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=80)
    parser.add_argument("--seed", type=int, default=20261205)
    parser.add_argument("--model-dir", type=Path, default=Path("models"))
    args = parser.parse_args()
    model = ModelRegistry((args.model_dir,), device="cpu", warmup=False).get("fracture-demo")
    if not isinstance(model, FracturePipeline):
        raise SystemExit("fracture-demo is not the fracture detector")
    threshold = load_card(args.model_dir / "fracture-demo").labels[0].threshold
    images = [c.image for c in phantom_detection_cases(args.n, args.seed)]
    p = model.predict_images(images).slice_probabilities[:, 0]
    q = model.predict_images(mirrored_images(images)).slice_probabilities[:, 0]
    spread = np.abs(p - q)
    print(f"{len(spread)} images: spread median {np.median(spread):.4f}, 95th percentile "
          f"{np.percentile(spread, 95):.4f}, 99th percentile {np.percentile(spread, 99):.4f}, "
          f"maximum {spread.max():.4f}; calls changed "
          f"{int(((p >= threshold) != (q >= threshold)).sum())}")


if __name__ == "__main__":
    main()
