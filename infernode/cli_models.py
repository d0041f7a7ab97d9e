"""``infernode models``: list, show, verify, train and evaluate models.

Registered by the main CLI as a sub-app. Model directories come from ``--models`` (repeatable);
the default is the settings' ``inference.model_paths`` (``--config`` file, then the environment),
as the node itself would load them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.table import Table

from infernode.cli_common import ConfigOption, settings_or_exit

if TYPE_CHECKING:
    from inference.evaluation.datasets import RsnaSlice
    from inference.registry import ModelRegistry

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Model registry and cards")
console = Console()

ModelsOption = Annotated[
    list[Path] | None,
    typer.Option("--models", "-m", help="model directory or folder of them (repeatable)"),
]


def _registry(models: list[Path] | None, device: str | None = None,
              config: Path | None = None) -> ModelRegistry:
    """The registry the node would build from its settings (`config` file, then the
    environment, e.g. INFERNODE_INFERENCE__MODEL_PATHS), with `--models` and `--device` put
    over them."""
    from inference.config import build_registry

    cfg = settings_or_exit(config).inference
    update: dict[str, Any] = {}
    if models:
        update["model_paths"] = tuple(models)
    if device is not None:
        update["device"] = device
    return build_registry(cfg.model_copy(update=update))


@app.command("list")
def list_models(models: ModelsOption = None, config: ConfigOption = None) -> None:
    """List the models found, with their task and weights format."""
    reg = _registry(models, config=config)
    table = Table("id", "version", "task", "format", "clinical use", "directory")
    for col in table.columns:
        col.overflow = "fold"
    for mid in reg.ids():
        c = reg.card(mid)
        table.add_row(mid, c.version, c.task,
                      c.weights.format if c.method is None else f"{c.weights.format} "
                      f"({c.method.name})",
                      "NO" if c.not_for_clinical_use else "yes",
                      str(reg.directory(mid)))
    console.print(table)


@app.command()
def show(model_id: str, models: ModelsOption = None, config: ConfigOption = None) -> None:
    """Print a model's card."""
    from inference.errors import InferenceError

    reg = _registry(models, config=config)
    try:
        card = reg.card(model_id)
    except InferenceError as exc:
        console.print(f"[red]{exc}")
        raise typer.Exit(1) from exc
    console.print(yaml.safe_dump(card.model_dump(mode="json", exclude_none=True),
                                 sort_keys=False, width=100))


@app.command()
def verify(
    model_ids: Annotated[list[str] | None, typer.Argument(help="ids (default: all)")] = None,
    models: ModelsOption = None,
    device: Annotated[str | None, typer.Option(
        help="auto | cpu | cuda (default: the settings' inference.device)")] = None,
    config: ConfigOption = None,
) -> None:
    """Recompute checksums, load strictly, run a smoke inference. Exit 1 on any failure."""
    from inference.errors import InferenceError

    reg = _registry(models, device, config)
    failed = 0
    for mid in model_ids or reg.ids():
        try:
            res = reg.verify(mid)
        except InferenceError as exc:
            failed += 1
            console.print(f"[red]FAIL[/] {mid}: {exc}")
            continue
        console.print(f"[green]OK[/] {mid}: {res.files_checked} weight file(s) match; "
                      f"smoke {res.smoke_seconds:.2f} s; {res.detail}")
    if failed:
        raise typer.Exit(1)


@app.command()
def train(
    pipeline: Annotated[str, typer.Argument(help="which demo model: ich | stroke | fracture")],
    out: Annotated[Path | None, typer.Option("--out", help="model directory to write "
                                                          "(fracture: models/fracture-demo)")
                   ] = None,
    epochs: Annotated[int | None, typer.Option(help="override the number of epochs")] = None,
    n_train: Annotated[int | None, typer.Option(help="override the training studies")] = None,
    n_test: Annotated[int | None, typer.Option(help="override the held-out test studies")
                      ] = None,
    seed: Annotated[int | None, typer.Option(help="override the seed")] = None,
    lr: Annotated[float | None, typer.Option(help="ich, fracture: peak learning rate")] = None,
    fit_minutes: Annotated[float | None, typer.Option(
        help="fracture: wall-time budget of the fit (the schedule still ends properly)")] = None,
    init_from: Annotated[Path | None, typer.Option(
        help="ich, fracture: a weights.pt of the same architecture to continue from")] = None,
    focus_class: Annotated[str | None, typer.Option(
        help="ich: a subtype training should see more of (e.g. subarachnoid)")] = None,
    focus_share: Annotated[float | None, typer.Option(
        help="ich: share of each batch's sampling mass on slabs with the focus subtype")] = None,
    focus_pos_weight: Annotated[float | None, typer.Option(
        help="ich: weight of the focus subtype's positives in its slab and mask losses")] = None,
    hu_shift: Annotated[float | None, typer.Option(
        help="ich: soft-tissue HU shift range (+-) of the acquisition augmentation")] = None,
    slab_mm: Annotated[float | None, typer.Option(
        help="ich: slab thickness the model reads (mm; thinner slices are averaged into it)")
                       ] = None,
    fov_p: Annotated[float | None, typer.Option(
        help="ich: probability per sample of a tighter field of view (0.8-1.4 mm model cells; "
             "default 0, off)")] = None,
) -> None:
    """Train a demo model on phantoms (CPU, minutes) and write weights + model card."""
    from dataclasses import replace

    overrides: dict[str, Any] = {k: v for k, v in (("epochs", epochs), ("n_train", n_train),
                                                   ("seed", seed)) if v is not None}
    if out is None and pipeline != "fracture":
        console.print("[red]--out is required")
        raise typer.Exit(2)
    if pipeline == "ich":
        assert out is not None
        if n_test is not None:
            overrides["n_test"] = n_test
        from inference.training.ich import Augment, TrainConfig, train_ich

        overrides.update({k: v for k, v in (
            ("init_from", str(init_from) if init_from else None), ("lr", lr),
            ("focus_class", focus_class), ("focus_share", focus_share),
            ("focus_pos_weight", focus_pos_weight), ("slab_mm", slab_mm)) if v is not None})
        try:
            augment: dict[str, Any] = {k: v for k, v in (("hu_shift", hu_shift),
                                                          ("p_fov", fov_p)) if v is not None}
            if augment:
                overrides["augment"] = replace(Augment(), **augment)
            cfg = replace(TrainConfig(), **overrides)
        except ValueError as exc:
            console.print(f"[red]{exc}")
            raise typer.Exit(2) from exc
        card = train_ich(out, cfg, log=console.print)
    elif pipeline == "fracture":
        from inference.training.fracture import TrainConfig as FractureConfig
        from inference.training.fracture import train_fracture

        if n_test is not None:
            overrides["n_test"] = n_test
        if "epochs" in overrides:  # the detector counts optimiser steps, not epochs
            overrides["steps"] = overrides.pop("epochs")
        overrides.update({k: v for k, v in (("lr", lr), ("fit_minutes", fit_minutes),
                                            ("init_from", str(init_from) if init_from else None))
                          if v is not None})
        out = out or Path("models") / "fracture-demo"
        card = train_fracture(out, replace(FractureConfig(), **overrides), log=console.print)
    elif pipeline == "stroke":
        from inference.training.stroke import TrainConfig as StrokeConfig
        from inference.training.stroke import train_stroke

        assert out is not None
        if n_test is not None:
            overrides["n_test"] = n_test
        card = train_stroke(out, replace(StrokeConfig(), **overrides), log=console.print)
    else:
        console.print(f"[red]no trainer for {pipeline!r} (available: ich, stroke, fracture)")
        raise typer.Exit(2)
    console.print(f"[green]wrote[/] {out} ({card.id} {card.version})")


@app.command()
def evaluate(
    target: Annotated[str, typer.Argument(help="a model id, or 'stroke' / 'fracture' (then "
                                               "--model)")],
    model: Annotated[str | None, typer.Option(help="stroke model id (default "
                                                   "stroke-adc-threshold), fracture model id "
                                                   "(default fracture-demo)")] = None,
    data: Annotated[str, typer.Option(help="'phantoms', a folder in RSNA or NIfTI layout, a "
                                           "COCO-style JSON (fracture), or a folder of DICOM "
                                           "cases (--layout dicom-seg / dicom-sr)")
                    ] = "phantoms",
    layout: Annotated[str, typer.Option(help="phantoms | rsna | nifti | history (classifiers; "
                                             "history: --data is the node's database URL); nifti | "
                                             "dicom-seg (stroke: a folder per case with the "
                                             "diffusion series and a reference SEG); coco | "
                                             "dicom-sr (fracture: a folder per case with "
                                             "CR/DX images and a reference TID 1500 SR)")
                      ] = "phantoms",
    n: Annotated[int, typer.Option("--n", "-n", help="phantom studies (images)")] = 60,
    seed: Annotated[int, typer.Option(help="phantom seed (use one training never saw)")] = 777,
    family: Annotated[str, typer.Option(help="phantom family: heldout | train (stroke, ICH), "
                                             "original (ICH: the original head CT generator)")
                      ] = "heldout",
    csv_name: Annotated[str, typer.Option(help="RSNA label CSV")] = "stage_2_train.csv",
    image_dir: Annotated[str, typer.Option(help="RSNA image folder")] = "stage_2_train",
    out_json: Annotated[Path | None, typer.Option("--json", help="write the report")] = None,
    write_card: Annotated[bool, typer.Option(help="store the figures as the card's metrics "
                                                  "(stroke), or as its explainability "
                                                  "block (--gradcam)")] = False,
    gradcam: Annotated[bool, typer.Option(
        "--gradcam", help="ICH: how faithful the Grad-CAM maps are (share of maps whose peak "
                          "falls inside the lesion) on held-out phantoms")] = False,
    body_part: Annotated[str | None, typer.Option(help="fracture: body part of images that "
                                                       "do not say (COCO default: the card's "
                                                       "first; DICOM: none, such an image is "
                                                       "an error)")] = None,
    models: ModelsOption = None,
) -> None:
    """Per-class AUC, sensitivity, specificity, accuracy and F1 with 95% CIs (classifiers), or
    Dice, IoU, lesion F1, volume difference and HD95 with 95% CIs (``stroke``), or AP@0.5,
    AP@[.5:.95], FROC, image AUC, sensitivity and specificity with 95% CIs (``fracture``)."""
    from inference.errors import InferenceError

    reg = _registry(models)
    defaults = {"stroke": "stroke-adc-threshold", "fracture": "fracture-demo"}
    model_id = (model or defaults[target]) if target in defaults else target
    try:
        card = reg.card(model_id)
    except InferenceError as exc:
        console.print(f"[red]{exc}")
        raise typer.Exit(1) from exc
    if gradcam:
        report = _evaluate_gradcam(reg, model_id, n, seed, family)
        if write_card:
            from inference.cards import write_card as save_card

            save_card(card.model_copy(update={"explainability": {"gradcam": report}}),
                      reg.directory(model_id))
    elif card.task == "fracture-detection":
        report = _evaluate_fracture(reg, model_id, data, n, seed, family, body_part, layout)
    elif card.task == "stroke-segmentation":
        report = _evaluate_stroke(reg, model_id, data, n, seed, family, layout)
        if write_card:
            from inference.cards import write_card as save_card

            save_card(card.model_copy(update={"metrics": report}), reg.directory(model_id))
    else:
        report = _evaluate_classifier(reg, model_id, data, layout, n, seed, csv_name,
                                      image_dir, family)
    if out_json:
        out_json.write_text(json.dumps(report, indent=2), encoding="utf-8")


def _evaluate_fracture(reg: ModelRegistry, model_id: str, data: str, n: int, seed: int,
                       family: str, body_part: str | None, layout: str = "coco"
                       ) -> dict[str, Any]:
    from inference.errors import InputError
    from inference.evaluation.detection import (
        DetectionCase,
        coco_cases,
        evaluate_detection,
        phantom_detection_cases,
    )
    from inference.fracture import FracturePipeline

    pipe = reg.get(model_id)
    if not isinstance(pipe, FracturePipeline):
        console.print(f"[red]{model_id} is not a fracture detection model")
        raise typer.Exit(2)
    if data == "phantoms":
        if family not in ("heldout", "train"):
            console.print(f"[red]unknown phantom family {family!r} (heldout, train)")
            raise typer.Exit(2)
        cases: Iterable[DetectionCase] = phantom_detection_cases(
            n, seed, "heldout" if family == "heldout" else "train")
        name = f"{family} radiograph phantom family (seed {seed}, {n} images)"
    elif layout == "dicom-sr":
        from workers.evaluation import dicom_sr_cases, dicom_sr_detection_cases

        try:
            images = dicom_sr_cases(Path(data), body_part, pipe.card.body_parts)
        except InputError as exc:
            console.print(f"[red]{exc}")
            raise typer.Exit(2) from exc
        cases, name = dicom_sr_detection_cases(images), f"dicom-sr:{data}"
    elif layout in ("coco", "phantoms"):
        part = body_part or pipe.card.body_parts[0]
        cases, name = coco_cases(Path(data), part), f"coco:{data}"
    else:
        console.print(f"[red]unknown fracture layout {layout!r} (coco, dicom-sr)")
        raise typer.Exit(2)
    try:
        report = evaluate_detection(pipe, cases, name, model_id).as_dict()
    except InputError as exc:  # an image that cannot be read, named by its case
        console.print(f"[red]{exc}")
        raise typer.Exit(2) from exc
    table = Table("metric", "value [95% CI]")
    rows = [("AP@0.5", report["ap50"]), ("AP@[.5:.95]", report["ap50_95"])]
    rows += [(k.replace("sensitivity_at_", "FROC sens @ ").replace("_fp_per_image", " FP/img"),
              v) for k, v in report["froc"].items()]
    rows += [("image AUC", report["image_auc"]), ("sensitivity", report["sensitivity"]),
             ("specificity", report["specificity"])]
    for label, m in rows:
        table.add_row(label, f"{m['value']} [{m['ci'][0]}, {m['ci'][1]}]")
    console.print(table)
    console.print(f"{report['n_images']} images, {report['n_positive_images']} with a fracture, "
                  f"{report['n_truth_boxes']} truth boxes; image threshold "
                  f"{report['image_threshold']}")
    return report


def _evaluate_stroke(reg: ModelRegistry, model_id: str, data: str, n: int, seed: int,
                     family: str, layout: str = "nifti") -> dict[str, Any]:
    from inference.errors import InputError
    from inference.evaluation.stroke import (
        SegmentationCase,
        evaluate_segmentation,
        nifti_cases,
        phantom_cases,
    )

    cases: Iterable[SegmentationCase]
    if data == "phantoms":
        if family not in ("heldout", "train"):
            console.print(f"[red]unknown phantom family {family!r}")
            raise typer.Exit(2)
        cases = phantom_cases(n, seed, "heldout" if family == "heldout" else "train")
        name = f"{family} phantom family (seed {seed})"
    elif layout == "dicom-seg":
        from workers.evaluation import dicom_seg_cases

        try:
            cases, name = dicom_seg_cases(Path(data)), f"dicom-seg:{data}"
        except InputError as exc:
            console.print(f"[red]{exc}")
            raise typer.Exit(2) from exc
    else:
        cases, name = nifti_cases(Path(data)), f"nifti:{data}"
    report = evaluate_segmentation(reg.get(model_id), cases, name, model_id).as_dict()
    table = Table("metric", "mean [95% CI]", "n")
    for key in ("dice", "iou", "lesion_f1", "abs_volume_diff_ml", "hd95_mm"):
        m = report[key]
        lo, hi = m["ci"]
        table.add_row(key, f"{m['mean']} [{lo}, {hi}]", str(m["n"]))
    console.print(table)
    ge1 = report["lesions_ge_1ml"]
    console.print(f"{report['n_cases']} cases; lesions >= 1 mL: {ge1['n']}, median |volume "
                  f"error| {ge1['median_abs_volume_error_pct']}%, within 5%: {ge1['within_5pct']}")
    return report


def _evaluate_gradcam(reg: ModelRegistry, model_id: str, n: int, seed: int,
                      family: str) -> dict[str, Any]:
    """Grad-CAM peak-in-lesion figures of an ICH model on `n` phantoms of `family`."""
    from inference.evaluation.datasets import family_dataset
    from inference.explain.faithfulness import gradcam_faithfulness

    pipe = reg.get(model_id)
    if pipe.card.explain is None:
        console.print(f"[red]model {model_id!r} has no Grad-CAM layer (card: explain)")
        raise typer.Exit(2)
    result = gradcam_faithfulness(pipe, family_dataset(n, seed, family))
    report = {**result.as_dict(), "layer": pipe.card.explain.target_layer,
              "dataset": f"phantoms: {family} family, seed {seed}, {n} studies",
              "model_version": pipe.card.version,
              "weights_sha256": pipe.card.weights_sha256,
              "command": f"infernode models evaluate {model_id} --gradcam --n {n} "
                         f"--seed {seed} --family {family}"}
    peak = report["peak_in_lesion"]
    console.print(f"Grad-CAM peak in lesion (within {result.tolerance_mm:g} mm): "
                  f"{peak['hits']}/{peak['n']} = {peak['rate']} {peak['ci95']}; strictly "
                  f"inside: {report['peak_in_lesion_strict']['rate']}; chance "
                  f"{report['chance_rate']}; maps of absent classes: "
                  f"{report['false_positive_maps']}")
    return report


def _evaluate_classifier(reg: ModelRegistry, model_id: str, data: str, layout: str, n: int,
                         seed: int, csv_name: str, image_dir: str, family: str = "heldout"
                         ) -> dict[str, Any]:
    from inference.evaluation.datasets import (
        family_dataset,
        nifti_dataset,
        phantom_dataset,
        rsna_dataset,
    )
    from inference.evaluation.evaluate import evaluate as run_eval
    from inference.phantoms.families import FAMILIES

    pipe = reg.get(model_id)
    card = pipe.card
    if layout == "phantoms":
        if family == "original":
            studies = phantom_dataset(n, seed)
        elif family in FAMILIES:
            studies = family_dataset(n, seed, family)
        else:
            console.print(f"[red]unknown phantom family {family!r} (original, "
                          f"{', '.join(FAMILIES)})")
            raise typer.Exit(2)
        data = f"{family} family, seed {seed}"
    elif layout == "rsna":
        studies = rsna_dataset(Path(data), _dicom_slice_reader, csv_name, image_dir)
    elif layout == "nifti":
        studies = nifti_dataset(Path(data))
    elif layout == "history":  # --data: the node's database URL (docs/MONITORING.md)
        from infernode.cli_monitor import history_cases, history_label_key

        studies = history_cases(data, card)
    else:
        console.print(f"[red]unknown layout {layout!r}")
        raise typer.Exit(2)
    thresholds = {lab.key: lab.threshold for lab in card.labels}
    if layout == "history":  # the site's labels say positive / negative for the study only
        thresholds = {k: v for k, v in thresholds.items() if k == history_label_key(card)}
    report = run_eval(pipe, studies, f"{layout}:{data}", thresholds, segmentation=True)
    table = Table("class", "n+/n", "AUC", "sens", "spec", "acc", "F1")
    for key, m in report.per_class.items():
        def f(v: float, ci: tuple[float, float]) -> str:
            return f"{v:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"
        table.add_row(key, f"{m.n_positive}/{m.n}", f(m.auc, m.auc_ci),
                      f(m.sensitivity, m.sensitivity_ci), f(m.specificity, m.specificity_ci),
                      f(m.accuracy, m.accuracy_ci), f(m.f1, m.f1_ci))
    console.print(table)
    out = report.as_dict()
    if "normal_head_specificity" in out:
        nh = out["normal_head_specificity"]
        console.print(f"normal heads: {nh['n_normal']}, specificity {nh['specificity']} "
                      f"[{nh['specificity_ci'][0]}, {nh['specificity_ci'][1]}]")
    if "segmentation" in out:
        for name, d in out["segmentation"].items():
            per = ", ".join(f"{k} {v['mean']} (n={v['n']})" for k, v in d["per_subtype"].items())
            console.print(f"{name}: mean {d['mean']} over {d['n']} ({per})")
    return out


def _dicom_slice_reader(path: Path) -> RsnaSlice:
    """RSNA images are single-frame CT: HU = stored * slope + intercept (PS3.3 C.11.1.1.2);
    position along the slice normal from Image Position/Orientation (PS3.3 C.7.6.2.1.1)."""
    import numpy as np
    import pydicom

    from inference.evaluation.datasets import RsnaSlice

    ds = pydicom.dcmread(str(path))
    hu = ds.pixel_array.astype(np.float32) * float(getattr(ds, "RescaleSlope", 1)) + float(
        getattr(ds, "RescaleIntercept", 0))
    iop = np.array([float(v) for v in ds.ImageOrientationPatient])
    normal = np.cross(iop[:3], iop[3:])
    pos = float(np.dot(normal, [float(v) for v in ds.ImagePositionPatient]))
    py, px = (float(v) for v in ds.PixelSpacing)
    return RsnaSlice(pixels=hu, study_key=str(ds.StudyInstanceUID), position_mm=pos,
                     pixel_mm=(py, px))
