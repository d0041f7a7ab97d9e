"""Typed method parameters of the stroke cards (``method.params`` in ``model.yaml``).

ADC values are in 10^-6 mm²/s, the unit of the DICOM ADC maps most scanners store (Siemens,
GE, Philips after rescale); volumes in mL; distances in mm.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import ModelCardError


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PostProcess(_Params):
    """Shared clean-up of a lesion mask: connected components (PS3.3 does not define one; 6 =
    faces, 26 = faces, edges and corners) above a minimum volume, and suppression of small
    components that lie wholly in the outer rim of the brain mask (EPI edge artefacts)."""

    connectivity: Literal[6, 26] = 26
    min_lesion_ml: float = Field(default=0.1, ge=0.0)
    edge_margin_mm: float = Field(default=2.0, ge=0.0)
    edge_max_ml: float = Field(default=0.5, ge=0.0)
    bilateral_fraction: float = Field(default=0.2, gt=0.0, le=0.5)


class ThresholdParams(PostProcess):
    """The ischaemic core rule: ADC below ``adc_threshold`` (620 x 10^-6 mm²/s, the core
    threshold of commercial perfusion/diffusion software; Purushotham et al., Int J Stroke 2015)
    and at least ``adc_floor`` (failed fits and background are 0), in brain voxels whose DWI is
    above ``dwi_ratio`` times the DWI of the surrounding normal-ADC tissue (its
    Gaussian-weighted mean, ``reference_sigma_mm``), which cancels coil bias. With ``boundary:
    partial-volume`` the border voxels of each detected lesion are then re-decided by the
    half-way rule (see :func:`inference.stroke.threshold.partial_volume_boundary`; the edge
    signal's extrapolation needs ``boundary_fit_min_voxels`` pure voxels and is remade on the
    decided lesion ``boundary_refits`` times; a lesion with ``boundary_t2_min_voxels`` pure
    voxels takes its scale from the infarct's own local T2 signal, Gaussian
    ``boundary_t2_sigma_mm``, so that grey- and white-matter parts get their own edge value);
    ``threshold`` keeps the plain ADC < ``adc_threshold`` border."""

    adc_threshold: float = Field(default=620.0, gt=0.0)
    adc_floor: float = Field(default=100.0, ge=0.0)
    dwi_ratio: float = Field(default=1.2, gt=0.0)
    csf_adc: float = Field(default=1500.0, gt=0.0)
    reference_sigma_mm: float = Field(default=20.0, gt=0.0)
    boundary: Literal["threshold", "partial-volume"] = "partial-volume"
    boundary_fit_min_voxels: int = Field(default=10, ge=2)
    boundary_refits: int = Field(default=2, ge=0, le=10)
    boundary_sigma_mm: float = Field(default=6.0, gt=0.0)
    boundary_t2_min_voxels: int = Field(default=30, ge=3)
    boundary_t2_sigma_mm: float = Field(default=3.0, gt=0.0)


class NetworkParams(PostProcess):
    """How DWI + ADC become network input and the output becomes a mask.

    Channels: DWI divided by the local DWI of normal-ADC brain tissue (ADC in [``adc_normal``,
    ``csf_adc``), Gaussian ``reference_sigma_mm``), and ADC times
    ``adc_scale`` clipped to [0, ``adc_clip``]; both zero outside the brain mask. A 2-D network
    runs slice by slice after in-plane resampling to ``pixel_mm`` (None: native grid); a 3-D
    network runs by sliding window of ``roi_size`` (z, y, x) on the native grid. ``output``
    says whether the network gives one sigmoid channel or softmax channels with the lesion in
    channel 1.
    """

    spatial_dims: Literal[2, 3] = 2
    pixel_mm: float | None = Field(default=2.0, gt=0.0)
    roi_size: tuple[int, ...] = (32, 96, 96)
    adc_scale: float = Field(default=1e-3, gt=0.0)
    adc_clip: float = Field(default=4.0, gt=0.0)
    dwi_clip: float = Field(default=6.0, gt=0.0)
    csf_adc: float = Field(default=1500.0, gt=0.0)
    adc_floor: float = Field(default=100.0, ge=0.0)
    adc_normal: float = Field(default=620.0, ge=0.0)
    reference_sigma_mm: float = Field(default=20.0, gt=0.0)
    output: Literal["sigmoid", "softmax"] = "sigmoid"
    batch_slices: int = Field(default=16, ge=1)


P = TypeVar("P", bound=BaseModel)


def parse_params(kind: type[P], params: dict[str, Any], where: str) -> P:
    """Validate card ``method.params`` into ``kind``.

    Raises:
        ModelCardError: a parameter is unknown or out of range (each named).
    """
    try:
        return kind.model_validate(params)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                             for e in exc.errors())
        raise ModelCardError(f"{where}: method params: {problems}") from exc
