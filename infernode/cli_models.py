"""``infernode models``: list, show, verify, train and evaluate models.

Registered by the main CLI as a sub-app. Model directories come from ``--models`` (repeatable);
the default is the project's ``models`` folder plus the BLAST-CT weights beside the project.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
import yaml
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from inference.evaluation.datasets import RsnaSlice
    from inference.registry import ModelRegistry

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Model registry and cards")
console = Console()

ModelsOption = Annotated[
    list[Path] | None,
    typer.Option("--models", "-m", help="model directory or folder of them (repeatable)"),
]


def _registry(models: list[Path] | None, device: str = "auto") -> ModelRegistry:
    from inference.config import InferenceConfig, build_registry

    cfg = InferenceConfig(device=device) if not models else InferenceConfig(
        model_paths=tuple(models), device=device)
    return build_registry(cfg)


@app.command("list")
def list_models(models: ModelsOption = None) -> None:
    """List the models found, with their task and weights format."""
    reg = _registry(models)
    table = Table("id", "version", "task", "format", "clinical use", "directory")
    for col in table.columns:
        col.overflow = "fold"
    for mid in reg.ids():
        c = reg.card(mid)
        table.add_row(mid, c.version, c.task, c.weights.format,
                      "NO" if c.not_for_clinical_use else "yes",
                      str(reg.directory(mid)))
    console.print(table)


@app.command()
def show(model_id: str, models: ModelsOption = None) -> None:
    """Print a model's card."""
    from inference.errors import InferenceError

    reg = _registry(models)
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
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
) -> None:
    """Recompute checksums, load strictly, run a smoke inference. Exit 1 on any failure."""
    from inference.errors import InferenceError

    reg = _registry(models, device)
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
    pipeline: Annotated[str, typer.Argument(help="which demo model: ich")],
    out: Annotated[Path, typer.Option("--out", help="model directory to write")],
    epochs: Annotated[int | None, typer.Option(help="override the number of epochs")] = None,
    n_train: Annotated[int | None, typer.Option(help="override the training studies")] = None,
    seed: Annotated[int | None, typer.Option(help="override the seed")] = None,
) -> None:
    """Train a demo model on phantoms (CPU, minutes) and write weights + model card."""
    if pipeline != "ich":
        console.print(f"[red]no trainer for {pipeline!r} (available: ich)")
        raise typer.Exit(2)
    from dataclasses import replace

    from inference.training.ich import TrainConfig, train_ich

    cfg = TrainConfig()
    if epochs is not None:
        cfg = replace(cfg, epochs=epochs)
    if n_train is not None:
        cfg = replace(cfg, n_train=n_train)
    if seed is not None:
        cfg = replace(cfg, seed=seed)
    card = train_ich(out, cfg, log=console.print)
    console.print(f"[green]wrote[/] {out} ({card.id} {card.version})")


@app.command()
def evaluate(
    model_id: str,
    data: Annotated[str, typer.Option(help="'phantoms', or a folder in RSNA or NIfTI layout")],
    layout: Annotated[str, typer.Option(help="phantoms | rsna | nifti")] = "phantoms",
    n: Annotated[int, typer.Option(help="phantom studies")] = 60,
    seed: Annotated[int, typer.Option(help="phantom seed (use one training never saw)")] = 777,
    csv_name: Annotated[str, typer.Option(help="RSNA label CSV")] = "stage_2_train.csv",
    image_dir: Annotated[str, typer.Option(help="RSNA image folder")] = "stage_2_train",
    out_json: Annotated[Path | None, typer.Option("--json", help="write the report")] = None,
    models: ModelsOption = None,
) -> None:
    """Per-class AUC, sensitivity, specificity, accuracy and F1 with 95% CIs."""
    from inference.evaluation.datasets import nifti_dataset, phantom_dataset, rsna_dataset
    from inference.evaluation.evaluate import evaluate as run_eval

    reg = _registry(models)
    pipe = reg.get(model_id)
    card = pipe.card
    if layout == "phantoms":
        studies = phantom_dataset(n, seed)
    elif layout == "rsna":
        studies = rsna_dataset(Path(data), _dicom_slice_reader, csv_name, image_dir)
    elif layout == "nifti":
        studies = nifti_dataset(Path(data))
    else:
        console.print(f"[red]unknown layout {layout!r}")
        raise typer.Exit(2)
    thresholds = {lab.key: lab.threshold for lab in card.labels}
    report = run_eval(pipe, studies, f"{layout}:{data}", thresholds)
    table = Table("class", "n+/n", "AUC", "sens", "spec", "acc", "F1")
    for key, m in report.per_class.items():
        def f(v: float, ci: tuple[float, float]) -> str:
            return f"{v:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"
        table.add_row(key, f"{m.n_positive}/{m.n}", f(m.auc, m.auc_ci),
                      f(m.sensitivity, m.sensitivity_ci), f(m.specificity, m.specificity_ci),
                      f(m.accuracy, m.accuracy_ci), f(m.f1, m.f1_ci))
    console.print(table)
    if out_json:
        out_json.write_text(json.dumps(report.as_dict(), indent=2), encoding="utf-8")


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
