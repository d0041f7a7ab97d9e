"""Stroke segmentation evaluation: labelled cases, a runner and the report the card keeps.

Cases come from the held-out phantom family (default), or from a folder with one sub-folder per
case holding ``dwi.nii.gz``, ``adc.nii.gz`` and ``mask.nii.gz`` (NIfTI, read with nibabel and
turned into LPS (z, y, x) volumes; ADC in 10^-6 mm²/s or a unit the pipeline recognises).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from scipy import ndimage

from ..errors import InputError
from ..phantoms.mr_stroke import Family, stroke_cohort
from ..types import Prediction, StudyInput
from .datasets import _nifti_volume
from .segmentation import CaseScores, mean_with_ci, score_case


class StudyPipeline(Protocol):
    def predict_input(self, inp: StudyInput, explain: bool = True, **options: Any
                      ) -> Prediction: ...


@dataclass(frozen=True)
class SegmentationCase:
    """One labelled study: its input channels, the truth mask (uint8, input grid) and the
    options the model needs for it (e.g. ``b_value`` when the ADC is computed from b0)."""

    case_id: str
    inp: StudyInput
    truth: np.ndarray
    options: Mapping[str, Any] = field(default_factory=dict)


def phantom_cases(n: int, seed: int, family: Family = "heldout",
                  normal_fraction: float = 0.1) -> Iterator[SegmentationCase]:
    """Phantoms of ``family`` (``heldout`` by default: generator parameters training never saw)."""
    for ph in stroke_cohort(n, seed, family, normal_fraction):
        yield SegmentationCase(f"{family}-{ph.spec.seed}", ph.study_input(), ph.truth)


def _nifti(path: Path, case: str) -> tuple[Any, np.ndarray]:
    import nibabel as nib

    img: Any = nib.load(str(path))
    data = np.asarray(img.dataobj, dtype=np.float32)
    if data.ndim != 3:
        raise InputError(f"{case}/{path.name}: expected a 3-D image")
    return img, data


def nifti_cases(root: Path) -> Iterator[SegmentationCase]:
    """Cases ``root/<case>/{dwi,adc,mask}.nii[.gz]`` in name order.

    Raises:
        InputError: a case lacks a file, or its images differ in shape.
    """
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        files = {}
        for name in ("dwi", "adc", "mask"):
            found = sorted(d.glob(f"{name}.nii*"))
            if not found:
                raise InputError(f"case {d.name}: no {name}.nii or {name}.nii.gz")
            files[name] = found[0]
        vols = {}
        for name in ("dwi", "adc"):
            img, data = _nifti(files[name], d.name)
            vols[name] = _nifti_volume(data, img.affine, img.header.get_zooms()[:3], d.name)
        _, mask = _nifti(files["mask"], d.name)
        truth = np.ascontiguousarray(mask.transpose(2, 1, 0) > 0).astype(np.uint8)
        if truth.shape != vols["dwi"].array.shape:
            raise InputError(f"case {d.name}: mask shape differs from the DWI")
        try:
            inp = StudyInput(vols)
        except ValueError as exc:
            raise InputError(f"case {d.name}: {exc}") from exc
        yield SegmentationCase(d.name, inp, truth)


def lesion_volume_errors(pred: np.ndarray, truth: np.ndarray, spacing: tuple[float, ...],
                         min_ml: float = 1.0, connectivity: int = 26) -> list[float]:
    """Relative volume error (pred - truth) / truth of each truth lesion of at least ``min_ml``;
    its predicted volume is that of the predicted components overlapping it."""
    s = ndimage.generate_binary_structure(3, 1 if connectivity == 6 else 3)
    tl, nt = ndimage.label(truth.astype(bool), structure=s)
    pl, _ = ndimage.label(pred.astype(bool), structure=s)
    vox_ml = float(np.prod(spacing)) / 1000.0
    psize = np.bincount(pl.ravel())
    out = []
    for i in range(1, nt + 1):
        t = tl == i
        t_ml = int(t.sum()) * vox_ml
        if t_ml < min_ml:
            continue
        comps = np.unique(pl[t])
        p_ml = float(psize[comps[comps > 0]].sum()) * vox_ml
        out.append((p_ml - t_ml) / t_ml)
    return out


@dataclass
class SegmentationReport:
    """Per-case scores and their summaries with bootstrap 95% CIs."""

    dataset: str
    model_id: str
    cases: list[CaseScores] = field(default_factory=list)
    volume_errors: list[float] = field(default_factory=list)
    n_boot: int = 1000
    seed: int = 0

    def as_dict(self) -> dict[str, Any]:
        """The figures as they go into a model card (lesion cases for Dice/IoU/HD95)."""
        les = [c for c in self.cases if c.truth_ml > 0]
        tp = sum(c.lesions.tp for c in self.cases)
        fp = sum(c.lesions.fp for c in self.cases)
        fn = sum(c.lesions.fn for c in self.cases)
        errs = np.abs(np.array(self.volume_errors))
        normals = [c for c in self.cases if c.truth_ml == 0]

        def m(values: list[float]) -> dict[str, object]:
            return mean_with_ci(values, self.n_boot, self.seed)

        return {
            "dataset": self.dataset,
            "model": self.model_id,
            "n_cases": len(self.cases),
            "n_with_lesion": len(les),
            "dice": m([c.dice for c in les]),
            "iou": m([c.iou for c in les]),
            "lesion_f1": m([c.lesions.f1 for c in self.cases]),
            "lesion_counts": {"tp": tp, "fp": fp, "fn": fn},
            "abs_volume_diff_ml": m([c.abs_volume_diff_ml for c in self.cases]),
            "hd95_mm": m([c.hd95_mm for c in les]),
            "lesions_ge_1ml": {
                "n": int(errs.size),
                "median_abs_volume_error_pct": round(float(np.median(errs)) * 100, 2)
                if errs.size else None,
                "within_5pct": round(float((errs <= 0.05).mean()), 3) if errs.size else None,
            },
            "normal_cases_with_false_positive": sum(c.pred_ml > 0 for c in normals),
            "note": "bootstrap 95% CIs of the mean over cases; synthetic phantoms only, "
                    "no real-patient performance is claimed" if "phantom" in self.dataset else
                    "bootstrap 95% CIs of the mean over cases",
        }


def evaluate_segmentation(model: StudyPipeline, cases: Iterable[SegmentationCase],
                          dataset: str, model_id: str, key: str = "infarct",
                          n_boot: int = 1000, seed: int = 0) -> SegmentationReport:
    """Predict every case and score mask ``key`` against its truth."""
    report = SegmentationReport(dataset=dataset, model_id=model_id, n_boot=n_boot, seed=seed)
    for case in cases:
        pred = model.predict_input(case.inp, explain=False, **case.options)
        masks = {m.key: m.mask for m in pred.masks}
        mask = masks.get(key, np.zeros_like(case.truth))
        spacing = case.inp.grid.spacing
        report.cases.append(score_case(case.case_id, mask, case.truth, spacing))
        report.volume_errors.extend(lesion_volume_errors(mask, case.truth, spacing))
    return report
