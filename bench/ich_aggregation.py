"""Inference-side study rules for the ICH model, without retraining: how the slab probabilities
become a study probability (the pipeline's maximum over slabs, the mean of the top-k slabs, a
noisy-OR) and whether the mirror-image pass (computed by the runner for the uncertainty check)
is averaged in. Thresholds are chosen per rule on the calibration set (``train`` family, seed
20250102, 60 studies, max Youden J, as the trainer does); the rule is chosen there too. Then
``--measure RULE`` applies that rule with those thresholds to held-out-family studies once
(docs/MODELS.md, ICH section).

    .venv/bin/python bench/ich_aggregation.py                       # every rule, calibration set
    .venv/bin/python bench/ich_aggregation.py --measure max --heldout-seed 20250103 --n-heldout 80
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

# bench/inference.py would shadow the inference package: drop this folder from the path
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from inference.evaluation.datasets import LabelledStudy, family_dataset  # noqa: E402
from inference.evaluation.metrics import roc_auc, youden_threshold  # noqa: E402
from inference.ich.labels import ICH_CLASSES  # noqa: E402
from inference.ich.pipeline import IchPipeline  # noqa: E402
from inference.ich.preprocess import prepare  # noqa: E402
from inference.registry import ModelRegistry  # noqa: E402

Slabs = tuple[np.ndarray, np.ndarray]
"""Slab probabilities (m, classes) of a study and of its mirror image."""


def _top(k: int, p: np.ndarray) -> np.ndarray:
    return np.sort(p, axis=0)[-k:].mean(axis=0)


RULES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "max": lambda p, q: p.max(0),
    "mirror-mean": lambda p, q: (p.max(0) + q.max(0)) / 2,
    "mirror-mean-slab": lambda p, q: ((p + q) / 2).max(0),
    "top2": lambda p, q: _top(2, p),
    "top3": lambda p, q: _top(3, p),
    "mirror-mean-top2": lambda p, q: _top(2, (p + q) / 2),
    "noisy-or": lambda p, q: 1 - np.prod(1 - p, axis=0),
}


def slab_probabilities(pipe: IchPipeline, studies: Iterable[LabelledStudy]
                       ) -> tuple[np.ndarray, list[Slabs]]:
    """Study labels (n, classes) and each study's slab probabilities, as is and mirrored (the
    voxel order flipped left-right, as :func:`inference.uncertainty.mirrored`)."""
    labels, slabs = [], []
    for st in studies:
        arr, spacing = st.volume.array, st.volume.spacing
        p = pipe.slab_probabilities(prepare(arr, spacing, pipe.card.input))
        q = pipe.slab_probabilities(prepare(np.ascontiguousarray(arr[:, :, ::-1]), spacing,
                                            pipe.card.input))
        labels.append([st.labels[k] for k in ICH_CLASSES])
        slabs.append((p, q))
    return np.array(labels), slabs


def scores(rule: str, slabs: list[Slabs]) -> np.ndarray:
    return np.array([RULES[rule](p, q) for p, q in slabs])


def row(y: np.ndarray, s: np.ndarray, thresholds: dict[str, float]) -> str:
    out = []
    for j, key in enumerate(ICH_CLASSES):
        pos = y[:, j] == 1
        if pos.all() or not pos.any():
            out.append(f"{key} -")
            continue
        call = s[:, j] >= thresholds[key]
        out.append(f"{key} AUC {roc_auc(y[:, j], s[:, j]):.3f} sens {call[pos].mean():.2f} "
                   f"spec {(~call[~pos]).mean():.2f}")
    return "; ".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=Path("models"))
    parser.add_argument("--n-calibration", type=int, default=60)
    parser.add_argument("--calibration-seed", type=int, default=20250102)
    parser.add_argument("--measure", choices=sorted(RULES), default=None,
                        help="apply this rule to the held-out family (once, after choosing)")
    parser.add_argument("--heldout-seed", type=int, default=20250103)
    parser.add_argument("--n-heldout", type=int, default=80)
    args = parser.parse_args()
    torch.set_num_threads(2)
    pipe = ModelRegistry((args.model_dir,), device="cpu", warmup=False).get("ich-demo")
    if not isinstance(pipe, IchPipeline):
        raise SystemExit("ich-demo is not the ICH pipeline")
    y, slabs = slab_probabilities(pipe, family_dataset(args.n_calibration,
                                                       args.calibration_seed, "train"))
    thresholds = {}
    for rule in RULES:
        s = scores(rule, slabs)
        thresholds[rule] = {k: youden_threshold(y[:, j], s[:, j])
                            for j, k in enumerate(ICH_CLASSES)}
        if args.measure is None or rule == args.measure:
            print(f"calibration ({len(y)} train-family studies) {rule}: "
                  f"{row(y, s, thresholds[rule])}")
    if args.measure is not None:
        yh, held = slab_probabilities(pipe, family_dataset(args.n_heldout, args.heldout_seed,
                                                           "heldout"))
        print(f"held-out family ({len(yh)} studies, seed {args.heldout_seed}) {args.measure}: "
              f"{row(yh, scores(args.measure, held), thresholds[args.measure])}")


if __name__ == "__main__":
    main()
