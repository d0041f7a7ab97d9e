"""Rigid registration of a series onto another series in a different Frame of Reference.

Two series with different Frame of Reference UIDs (PS3.3 C.7.4.1.1.1) have no known spatial
relation: an ADC map computed offline, a b=0 series from a repeated acquisition after the
patient moved. `register_onto` estimates the rigid transform with SimpleITK (ITK's
registration framework): Mattes mutual information (contrast may differ: CSF is dark in DWI and
bright in ADC), a 3D Euler transform initialised by the centres of mass, a regular-step gradient
descent over three resolution levels. The moving series is then resampled (linear) onto the
target grid and takes the target's Frame of Reference.

`align_onto` is what a pipeline calls for every secondary role: a resampling by patient
coordinates when both series share a Frame of Reference (`resample.resample_onto`), a
registration when they do not.

Geometry: ITK images are in LPS like DICOM patient coordinates (PS3.3 C.7.6.2.1.1); the ITK
index order (x, y, z) is our (column, row, slice). The reported transform maps target (fixed)
points to moving points, ITK's convention.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import SimpleITK as sitk

from dicom_node.volume.errors import SeriesReadError
from dicom_node.volume.model import SeriesVolume
from dicom_node.volume.resample import FrameOfReferenceMismatch, resample_onto


class RegistrationError(SeriesReadError):
    """The registration did not run to an estimate (empty overlap, a degenerate image)."""

    reason = "registration_failed"


@dataclass(frozen=True)
class RegistrationSettings:
    """Optimiser and metric settings; the defaults suit brain MR at 1-5 mm voxels."""

    histogram_bins: int = 32
    sampling_fraction: float = 0.25
    learning_rate: float = 2.0
    min_step: float = 1e-4
    iterations: int = 200
    shrink_factors: tuple[int, ...] = (4, 2, 1)
    smoothing_sigmas_mm: tuple[float, ...] = (4.0, 2.0, 0.0)
    seed: int = 20260101


@dataclass(frozen=True)
class RegistrationReport:
    """What the registration found, for the job record: the rigid transform (target points to
    moving points) as the displacement of the target's centre in mm (LPS), the rotation as ITK
    Euler angles in degrees about the L, P and S axes (composed as Rz Rx Ry) and as a row-major
    3x3 matrix, the magnitudes of both, the final Mattes metric value (more negative is a
    better match), the optimiser iterations at the finest level, and its stop condition."""

    moving_frame_of_reference_uid: str | None
    target_frame_of_reference_uid: str | None
    translation_mm: tuple[float, float, float]
    rotation_deg: tuple[float, float, float]
    rotation_matrix: tuple[float, ...]
    translation_norm_mm: float
    rotation_angle_deg: float
    final_metric: float
    iterations: int
    stop_condition: str

    def summary(self) -> dict[str, float | int | str]:
        """Flat JSON-ready values for a job summary (UIDs are not patient data)."""
        return {
            "registration_translation_mm": round(self.translation_norm_mm, 2),
            "registration_rotation_deg": round(self.rotation_angle_deg, 2),
            "registration_metric": round(self.final_metric, 4),
            "registration_iterations": self.iterations,
        }


def to_sitk(volume: SeriesVolume) -> sitk.Image:
    """The volume as a float32 SimpleITK image with the same LPS geometry."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(volume.voxels, dtype=np.float32))
    image.SetSpacing((volume.spacing[2], volume.spacing[1], volume.spacing[0]))
    image.SetOrigin(tuple(float(v) for v in volume.origin))
    # ITK direction: row-major 3x3 whose columns are the x (column), y (row), z (slice) axes.
    axes = np.column_stack([volume.direction[:, 2], volume.direction[:, 1],
                            volume.direction[:, 0]])
    image.SetDirection(tuple(float(v) for v in axes.ravel()))
    return image


def _method(settings: RegistrationSettings) -> sitk.ImageRegistrationMethod:
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=settings.histogram_bins)
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(settings.sampling_fraction, settings.seed)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(
        learningRate=settings.learning_rate, minStep=settings.min_step,
        numberOfIterations=settings.iterations, relaxationFactor=0.5,
        gradientMagnitudeTolerance=1e-8)
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel(list(settings.shrink_factors))
    method.SetSmoothingSigmasPerLevel(list(settings.smoothing_sigmas_mm))
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    return method


def register_onto(moving: SeriesVolume, target: SeriesVolume,
                  settings: RegistrationSettings | None = None
                  ) -> tuple[SeriesVolume, RegistrationReport]:
    """`moving` rigidly registered onto `target` and resampled onto its grid (linear, 0
    outside), with the report of the transform found.

    The result keeps `moving`'s series UID, modality and units, and takes `target`'s geometry,
    slice references, headers and Frame of Reference UID.

    Raises:
        RegistrationError: the registration could not run (no overlap, constant image).
    """
    settings = settings or RegistrationSettings()
    fixed_image, moving_image = to_sitk(target), to_sitk(moving)
    try:
        initial = sitk.CenteredTransformInitializer(
            fixed_image, moving_image, sitk.Euler3DTransform(),
            sitk.CenteredTransformInitializerFilter.MOMENTS)
        method = _method(settings)
        method.SetInitialTransform(initial, inPlace=False)
        found = method.Execute(fixed_image, moving_image)
    except RuntimeError as exc:  # ITK reports every failure as a RuntimeError
        first_line = str(exc).strip().splitlines()[-1][:200] if str(exc).strip() else ""
        raise RegistrationError(f"rigid registration failed: {first_line}") from exc
    euler = sitk.Euler3DTransform(sitk.CompositeTransform(found).GetNthTransform(0))
    moved = sitk.Resample(moving_image, fixed_image, euler, sitk.sitkLinear, 0.0,
                          sitk.sitkFloat32)
    voxels = sitk.GetArrayFromImage(moved).astype(np.float32)
    angles = np.degrees(np.asarray([euler.GetAngleX(), euler.GetAngleY(), euler.GetAngleZ()]))
    matrix = np.asarray(euler.GetMatrix(), dtype=float).reshape(3, 3)
    angle = float(np.degrees(np.arccos(np.clip((np.trace(matrix) - 1) / 2, -1.0, 1.0))))
    # The translation reported is the displacement of the target's centre, which does not
    # depend on the centre of rotation ITK happened to use.
    shift = np.asarray(euler.TransformPoint(_centre(target)), float) - np.asarray(
        _centre(target))
    report = RegistrationReport(
        moving_frame_of_reference_uid=moving.frame_of_reference_uid,
        target_frame_of_reference_uid=target.frame_of_reference_uid,
        translation_mm=(float(shift[0]), float(shift[1]), float(shift[2])),
        rotation_deg=(float(angles[0]), float(angles[1]), float(angles[2])),
        rotation_matrix=tuple(float(v) for v in matrix.ravel()),
        translation_norm_mm=float(np.linalg.norm(shift)),
        rotation_angle_deg=angle,
        final_metric=float(method.GetMetricValue()),
        iterations=int(method.GetOptimizerIteration()),
        stop_condition=method.GetOptimizerStopConditionDescription()[:200],
    )
    return replace(moving, voxels=voxels, origin=target.origin, spacing=target.spacing,
                   direction=target.direction, slice_refs=target.slice_refs,
                   headers=target.headers,
                   frame_of_reference_uid=target.frame_of_reference_uid), report


def _centre(volume: SeriesVolume) -> tuple[float, float, float]:
    centre = volume.index_to_lps((np.asarray(volume.shape, dtype=float) - 1) / 2)[0]
    return float(centre[0]), float(centre[1]), float(centre[2])


def align_onto(moving: SeriesVolume, target: SeriesVolume,
               settings: RegistrationSettings | None = None
               ) -> tuple[SeriesVolume, RegistrationReport | None]:
    """`moving` on `target`'s grid: resampled by patient coordinates when both lie in one Frame
    of Reference (or either names none), registered rigidly when they do not; the report is
    None when no registration was needed.

    Raises:
        RegistrationError: the registration could not run.
    """
    try:
        return resample_onto(moving, target), None
    except FrameOfReferenceMismatch:
        return register_onto(moving, target, settings)
