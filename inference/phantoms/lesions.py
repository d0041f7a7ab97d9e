"""Haemorrhage shapes by subtype, as parameters drawn once and evaluated on any grid chunk.

Shapes follow the textbook appearance on axial non-contrast CT: epidural = biconvex lens against
the inner table; subdural = crescent along the convexity; subarachnoid = blood tracking into
sulci; intraparenchymal = lobulated blob with an oedema rim; intraventricular = blood layering
in the dependent (posterior, patient supine) part of a lateral ventricle.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .anatomy import Anatomy, Grid


@dataclass(frozen=True)
class Lesion:
    """A haemorrhage: subtype, parameters, density (HU)."""

    subtype: str
    hu: float
    params: dict[str, float]


def draw_lesion(subtype: str, anat: Anatomy, rng: np.random.Generator) -> Lesion:
    """Random parameters for one lesion of ``subtype`` inside ``anat``."""
    hu = float(rng.uniform(58, 82))
    theta = float(rng.uniform(0, 2 * np.pi))
    if subtype == "epidural":
        p = {"theta": theta, "phi": float(rng.uniform(-0.1, 0.6)),
             "radius": float(rng.uniform(32, 48)), "thick": float(rng.uniform(9, 18))}
    elif subtype == "subdural":
        p = {"theta": theta, "half_width": float(rng.uniform(0.7, 1.3)),
             "z0": float(rng.uniform(-25, 10)), "z_len": float(rng.uniform(40, 75)),
             "thick": float(rng.uniform(5, 11))}
    elif subtype == "subarachnoid":
        hu = float(rng.uniform(52, 72))
        p = {"theta": theta, "half_width": float(rng.uniform(0.5, 0.9)),
             "z0": float(rng.uniform(-15, 20)), "z_len": float(rng.uniform(25, 50)),
             "n_sulci": float(rng.integers(4, 8)), "depth": float(rng.uniform(10, 20)),
             "width": float(rng.uniform(1.8, 3.0)), "phase": float(rng.uniform(0, 1))}
    elif subtype == "intraparenchymal":
        side = float(rng.choice([-1.0, 1.0]))
        deep = bool(rng.random() < 0.5)
        c = ((side * rng.uniform(18, 28), rng.uniform(-8, 10), rng.uniform(0, 15)) if deep else
             (side * rng.uniform(15, 40), rng.uniform(-45, 40), rng.uniform(-5, 35)))
        p = {"cx": float(c[0]), "cy": float(c[1]), "cz": float(c[2]),
             "rx": float(rng.uniform(7, 17)), "ry": float(rng.uniform(8, 20)),
             "rz": float(rng.uniform(7, 15)), "lobes": float(rng.uniform(0.05, 0.2)),
             "phase": float(rng.uniform(0, 2 * np.pi)), "edema": float(rng.uniform(2.5, 5))}
    elif subtype == "intraventricular":
        p = {"side": float(rng.choice([-1.0, 0.0, 1.0])), "level": float(rng.uniform(0.0, 0.6))}
    else:
        raise ValueError(f"unknown haemorrhage subtype {subtype!r}")
    return Lesion(subtype=subtype, hu=hu, params=p)


def lesion_mask(lesion: Lesion, anat: Anatomy, g: Grid) -> tuple[np.ndarray, np.ndarray | None]:
    """Boolean mask of ``lesion`` on grid chunk ``g``, and an oedema mask for IPH."""
    p = lesion.params
    inside = anat.intracranial(g)
    if lesion.subtype == "epidural":
        d = np.array([np.cos(p["theta"]) * np.cos(p["phi"]), np.sin(p["theta"]) * np.cos(p["phi"]),
                      np.sin(p["phi"])])
        s = anat.inner_surface_point(d)
        n = s / np.square(anat.inner_axes)
        n = n / np.linalg.norm(n)
        c = s + (p["radius"] - p["thick"]) * n
        ball = (g.x - c[0]) ** 2 + (g.y - c[1]) ** 2 + (g.z - c[2]) ** 2 < p["radius"] ** 2
        return inside & ball, None
    if lesion.subtype == "subdural":
        depth = anat.depth_below_inner_table(g)
        off = _angle_offset(anat.angle(g), p["theta"]) / p["half_width"]
        zt = (g.z - p["z0"]) / p["z_len"]
        taper = np.clip(np.cos(np.clip(off, -1, 1) * np.pi / 2), 0, 1) * np.clip(
            np.sin(np.clip(zt, 0, 1) * np.pi), 0, 1) ** 0.5
        return inside & (depth < p["thick"] * taper), None
    if lesion.subtype == "subarachnoid":
        depth = anat.depth_below_inner_table(g)
        ang = anat.angle(g)
        off = _angle_offset(ang, p["theta"])
        in_sector = (np.abs(off) < p["half_width"]) & (g.z > p["z0"]) & (g.z < p["z0"] + p["z_len"])
        rho = np.hypot(g.x, g.y)
        spacing = 2 * p["half_width"] / p["n_sulci"]
        # distance (mm, along the arc) to the nearest sulcus line inside the sector
        frac = (off + p["half_width"]) / spacing + p["phase"]
        arc = np.abs(frac - np.round(frac)) * spacing * rho
        sulci = (arc < p["width"] / 2) & (depth < p["depth"])
        surface = depth < anat.csf_mm + 1.0
        return inside & in_sector & (sulci | surface), None
    if lesion.subtype == "intraparenchymal":
        dx, dy, dz = g.x - p["cx"], g.y - p["cy"], g.z - p["cz"]
        r = np.sqrt((dx / p["rx"]) ** 2 + (dy / p["ry"]) ** 2 + (dz / p["rz"]) ** 2)
        lumps = 1 + p["lobes"] * np.sin(3 * np.arctan2(dy, dx) + p["phase"]) * np.cos(
            2 * np.arctan2(dz, np.hypot(dx, dy)))
        blob = (r < lumps) & anat.brain(g) & ~anat.ventricles(g)
        mean_r = (p["rx"] + p["ry"] + p["rz"]) / 3
        rim = (r < lumps * (1 + p["edema"] / mean_r)) & anat.brain(g) & ~blob & ~anat.ventricles(g)
        return blob, rim
    if lesion.subtype == "intraventricular":
        vent = anat.ventricles(g, side=int(p["side"]))
        y0, y1 = anat.ventricle_y_range()
        level = y0 + (y1 - y0) * p["level"]
        # supine patient: blood settles posteriorly (LPS +y is posterior)
        return vent & (g.y > level), None
    raise ValueError(f"unknown haemorrhage subtype {lesion.subtype!r}")


def _angle_offset(angle: np.ndarray, center: float) -> np.ndarray:
    return (angle - center + np.pi) % (2 * np.pi) - np.pi
