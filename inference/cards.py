"""Model cards: ``model.yaml`` beside the weights, parsed strictly.

A card says what a model is for and how it was made (id, version, task, modality, input spec,
labels with SNOMED CT codes and operating thresholds, intended use, training data, measured
metrics, weights with sha256, licence, and whether it is cleared for clinical use).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from .errors import ChecksumError, ModelCardError
from .types import Code, ModelInfo

CARD_FILE = "model.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CodeSpec(_Strict):
    """A coded concept as written in the card (scheme ``SCT`` = SNOMED CT)."""

    value: str
    scheme: str = "SCT"
    meaning: str

    def to_code(self) -> Code:
        return Code(value=self.value, scheme=self.scheme, meaning=self.meaning)


class LabelSpec(_Strict):
    """One output class: key used in code, display name, code, operating threshold."""

    key: str
    name: str
    code: CodeSpec
    threshold: float = Field(default=0.5, ge=0.0, le=1.0)


class WindowSpec(_Strict):
    """A CT display window (centre/width in HU) used as one input channel."""

    name: str
    center: float
    width: float = Field(gt=0)


class InputSpec(_Strict):
    """How the pipeline turns a volume into model input."""

    matrix: tuple[int, int] = (128, 128)
    slice_spacing_mm: float | None = Field(default=None, gt=0)
    context_slices: int = Field(default=1, ge=0)
    windows: tuple[WindowSpec, ...] = ()
    spatial_shape: tuple[int, ...] | None = None
    channels: int = Field(default=1, ge=1)


class ArchitectureSpec(_Strict):
    """A network named from the allow-list in :mod:`inference.architectures`."""

    name: str
    params: dict[str, Any] = Field(default_factory=dict)


class WeightFile(_Strict):
    path: str
    sha256: str

    @field_validator("sha256")
    @classmethod
    def _hex64(cls, v: str) -> str:
        v = v.lower()
        if len(v) != 64 or any(ch not in "0123456789abcdef" for ch in v):
            raise ValueError("sha256 must be 64 hex digits")
        return v


class WeightsSpec(_Strict):
    """Weight files and their format; ``none`` (no files) for a method without weights, whose
    parameters the card's ``method`` holds (e.g. the stroke ADC threshold)."""

    format: Literal["state_dict", "torchscript", "monai_bundle", "blast_ct_ensemble", "none"]
    files: tuple[WeightFile, ...] = ()

    @model_validator(mode="after")
    def _files_match_format(self) -> WeightsSpec:
        if self.format == "none" and self.files:
            raise ValueError("format 'none' takes no files")
        if self.format != "none" and not self.files:
            raise ValueError(f"format {self.format!r} needs at least one file")
        return self


class MethodSpec(_Strict):
    """How a task is computed when the card says (e.g. ``adc-threshold`` or ``network`` for
    stroke); ``params`` are validated by the pipeline that reads them."""

    name: str
    params: dict[str, Any] = Field(default_factory=dict)


TASKS = ("ich-classification", "ich-segmentation", "stroke-segmentation", "fracture-detection",
         "generic")
Task = Literal["ich-classification", "ich-segmentation", "stroke-segmentation",
               "fracture-detection", "generic"]


class ExplainSpec(_Strict):
    method: Literal["grad-cam"] = "grad-cam"
    target_layer: str


class QualitySpec(_Strict):
    """Input quality gate applied before inference (:mod:`inference.quality`); each check runs
    only when its threshold is given. Foreground (the imaged body part) is voxels above
    ``foreground`` in the modality's units (CT: HU), or above ``foreground`` times the
    volume's 99th percentile when ``foreground_relative`` (MR). A failed check makes the
    result "indeterminate — read as usual" with the reason."""

    min_slices: int | None = Field(default=None, ge=1)
    max_slice_spacing_mm: float | None = Field(default=None, gt=0)
    min_coverage_mm: float | None = Field(default=None, gt=0)
    foreground: float = -500.0
    foreground_relative: bool = False
    intensity_range: tuple[float, float] | None = None
    """Allowed range of the foreground's median (CT: HU)."""
    background_range: tuple[float, float] | None = None
    """Allowed range of the volume's 0.1th percentile, its darkest voxels (CT: air about -1000
    HU, present even when the field of view is tight; a lost Rescale Intercept shows here)."""
    metal_above: float = 3000.0
    max_metal_fraction: float | None = Field(default=None, ge=0, le=1)
    max_noise: float | None = Field(default=None, gt=0)
    """Robust in-plane noise of the foreground interior: HU for CT, a fraction of the
    foreground median when ``foreground_relative``."""
    noise_window: tuple[float, float] = (-100.0, 200.0)
    """CT: HU window of the soft tissue the noise is measured in (bone edges excluded)."""
    max_motion_mm: float | None = Field(default=None, gt=0)
    """Largest in-plane jump of the foreground's centre between adjacent slices."""
    min_matrix: int | None = Field(default=None, ge=1)
    """Radiographs: an image with fewer rows or columns than this (a thumbnail, a cropped
    export) fails."""
    min_dynamic_range: float | None = Field(default=None, gt=0)
    """Radiographs: the robust range (1st to 99th percentile) as a share of the stored bit
    depth's full scale (2^BitsStored - 1); a flat or nearly flat image fails."""
    max_clipped_fraction: float | None = Field(default=None, gt=0, le=1)
    """Radiographs: the share of pixels at the image's lowest or at its highest value (the
    larger); a saturated or clipped exposure fails."""


class UncertaintySpec(_Strict):
    """Uncertainty check after inference (:mod:`inference.uncertainty`): test-time
    augmentation by a left-right flip; the spread between the two predictions above a
    threshold (or a class decision that changes) makes the result indeterminate."""

    method: Literal["tta-flip"] = "tta-flip"
    classes: tuple[str, ...] = ()
    """Class keys whose probability and decision are compared (empty: every class)."""
    max_probability_spread: float | None = Field(default=None, ge=0, le=1)
    max_volume_spread: float | None = Field(default=None, ge=0)
    """Relative change of the total segmented volume (all masks together):
    |v - v'| / max(v, v', ``volume_floor_ml``)."""
    volume_floor_ml: float = Field(default=1.0, gt=0)
    decisions_must_agree: bool = True
    per_image: bool = False
    """Compare each image's probability (radiographs: the image-level probabilities, image by
    image), not only the study's."""


class ModelCard(_Strict):
    """The parsed ``model.yaml``."""

    schema_version: int = 1
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")
    version: str
    name: str
    task: Task
    modality: str
    body_part: str = "HEAD"
    body_parts: tuple[str, ...] = ()
    manufacturer: str = "InferNode project"
    intended_use: str
    not_for_clinical_use: bool
    license: str
    input: InputSpec = Field(default_factory=InputSpec)
    architecture: ArchitectureSpec | None = None
    weights: WeightsSpec
    method: MethodSpec | None = None
    labels: tuple[LabelSpec, ...] = Field(min_length=1)
    explain: ExplainSpec | None = None
    explainability: dict[str, Any] | None = None
    """Faithfulness figures of the explanation maps (written by the explainability tooling;
    kept as given)."""
    quality: QualitySpec | None = None
    uncertainty: UncertaintySpec | None = None
    training_data: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)

    @field_validator("weights", mode="before")
    @classmethod
    def _null_weights(cls, v: Any) -> Any:
        return {"format": "none"} if v is None else v

    @model_validator(mode="after")
    def _weightless_needs_method(self) -> ModelCard:
        if self.weights.format == "none" and self.method is None:
            raise ValueError("a card without weights must give its method")
        return self

    @property
    def info(self) -> ModelInfo:
        """Which model this is, as results name it (IHE AIR Contributing Equipment)."""
        return ModelInfo(model_id=self.id, version=self.version, name=self.name,
                         weights_sha256=self.weights_sha256, manufacturer=self.manufacturer,
                         not_for_clinical_use=self.not_for_clinical_use)

    @property
    def weights_sha256(self) -> str:
        """One digest for all weight files: the file digest, or sha256 of the sorted digests.

        A weight-less method is pinned by the sha256 of its canonical JSON (name and params),
        so that the algorithm identification changes whenever a parameter does.
        """
        digests = [f.sha256 for f in self.weights.files]
        if not digests:
            assert self.method is not None  # guaranteed by _weightless_needs_method
            canon = json.dumps(self.method.model_dump(mode="json"), sort_keys=True,
                               separators=(",", ":"))
            return hashlib.sha256(canon.encode()).hexdigest()
        if len(digests) == 1:
            return digests[0]
        return hashlib.sha256("".join(sorted(digests)).encode()).hexdigest()

    def label(self, key: str) -> LabelSpec:
        for lab in self.labels:
            if lab.key == key:
                return lab
        raise KeyError(key)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def load_card(model_dir: Path) -> ModelCard:
    """Parse ``model_dir/model.yaml``.

    Raises:
        ModelCardError: the file is missing, not YAML, or does not match the schema.
    """
    path = model_dir / CARD_FILE
    if not path.is_file():
        raise ModelCardError(f"no {CARD_FILE} in {model_dir}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ModelCardError(f"{path}: not valid YAML: {exc}") from exc
    return parse_card(data, str(path))


def parse_card(data: Any, where: str = "model card") -> ModelCard:
    """Validate a card from plain data; ModelCardError names each invalid field."""
    if not isinstance(data, dict):
        raise ModelCardError(f"{where}: expected a mapping at the top level")
    try:
        return ModelCard.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise ModelCardError(f"{where}: {problems}") from exc


def write_card(card: ModelCard, model_dir: Path) -> Path:
    """Write ``card`` as ``model.yaml`` (keys in schema order)."""
    path = model_dir / CARD_FILE
    data = card.model_dump(mode="json", exclude_none=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False, width=100, allow_unicode=True),
                    encoding="utf-8")
    return path


def verify_weights(card: ModelCard, model_dir: Path) -> list[Path]:
    """Recompute every weight file's sha256 against the card.

    Raises:
        ChecksumError: a file is missing or its digest differs (both digests are named).
    """
    checked = []
    for wf in card.weights.files:
        path = (model_dir / wf.path).resolve()
        if model_dir.resolve() not in path.parents:
            raise ChecksumError(f"{card.id}: weights path {wf.path!r} leaves the model directory")
        if not path.is_file():
            raise ChecksumError(f"{card.id}: weights file {wf.path} is missing")
        actual = sha256_file(path)
        if actual != wf.sha256:
            raise ChecksumError(
                f"{card.id}: sha256 mismatch for {wf.path}: card says {wf.sha256}, "
                f"file is {actual}"
            )
        checked.append(path)
    return checked
