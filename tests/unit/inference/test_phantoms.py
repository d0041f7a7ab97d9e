import numpy as np
import pytest

from inference.ich.labels import ICH_CLASSES
from inference.phantoms import PhantomSpec, make_head_ct, phantom_cohort
from inference.phantoms.anatomy import Anatomy, Grid

SMALL = dict(shape=(24, 128, 128), pixel_mm=1.8)


def _grid(ph):
    s = ph.spec
    nz, ny, nx = s.shape
    z = ((np.arange(nz) - (nz - 1) / 2) * s.slice_mm + s.z_shift_mm).reshape(-1, 1, 1)
    y = ((np.arange(ny) - (ny - 1) / 2) * s.pixel_mm).reshape(1, -1, 1)
    x = ((np.arange(nx) - (nx - 1) / 2) * s.pixel_mm).reshape(1, 1, -1)
    return Grid(z=z, y=y, x=x)


def test_seeded_and_deterministic():
    a = make_head_ct(PhantomSpec(subtypes=("subdural",), seed=3, **SMALL))
    b = make_head_ct(PhantomSpec(subtypes=("subdural",), seed=3, **SMALL))
    c = make_head_ct(PhantomSpec(subtypes=("subdural",), seed=4, **SMALL))
    assert np.array_equal(a.volume.array, b.volume.array)
    assert not np.array_equal(a.volume.array, c.volume.array)


def test_normal_head_has_skull_brain_ventricles_and_no_labels():
    ph = make_head_ct(PhantomSpec(seed=1, noise_hu=0.0, **SMALL))
    assert ph.masks == {} and ph.slice_labels.sum() == 0
    assert all(v == 0 for v in ph.study_labels.values())
    mid = ph.volume.array[12]
    assert (mid > 700).sum() > 200          # skull
    assert ((mid > 20) & (mid < 45)).sum() > 2000  # brain
    assert ((mid > -5) & (mid < 15)).sum() > 30    # CSF / ventricles
    assert mid[0, 0] == -1000.0              # air


@pytest.mark.parametrize("subtype", ["epidural", "subdural", "subarachnoid",
                                     "intraparenchymal", "intraventricular"])
def test_each_subtype_has_mask_labels_and_blood_density(subtype):
    ph = make_head_ct(PhantomSpec(subtypes=(subtype,), seed=11, noise_hu=0.0, **SMALL))
    m = ph.masks[subtype].astype(bool)
    assert m.sum() > 20
    hu = ph.volume.array[m]
    assert 50 <= hu.min() and hu.max() <= 85
    col = ICH_CLASSES.index(subtype)
    assert ph.slice_labels[:, col].sum() >= 1 and ph.study_labels["any"] == 1
    others = [k for k in ICH_CLASSES[1:] if k != subtype]
    assert all(ph.study_labels[k] == 0 for k in others)


def _anatomy(ph):
    return Anatomy.draw(np.random.default_rng(ph.spec.seed))


def test_extra_axial_shapes_lie_against_the_inner_table():
    for subtype in ("epidural", "subdural"):
        ph = make_head_ct(PhantomSpec(subtypes=(subtype,), seed=5, **SMALL))
        g, anat = _grid(ph), _anatomy(ph)
        depth = np.broadcast_to(anat.depth_below_inner_table(g), ph.volume.array.shape)
        m = ph.masks[subtype].astype(bool)
        assert depth[m].min() < 2.0          # touches the skull
        assert depth[m].max() < 20.0         # does not reach deep brain


def test_lens_is_thicker_than_crescent_for_its_extent():
    """Epidural: thick for its area (biconvex); subdural: thin and long (crescent)."""
    ratios = {}
    for subtype in ("epidural", "subdural"):
        vals = []
        for seed in range(4):
            ph = make_head_ct(PhantomSpec(subtypes=(subtype,), seed=seed, **SMALL))
            g, anat = _grid(ph), _anatomy(ph)
            depth = np.broadcast_to(anat.depth_below_inner_table(g), ph.volume.array.shape)
            m = ph.masks[subtype].astype(bool)
            area_mm2 = m.sum() * ph.spec.pixel_mm**2 * ph.spec.slice_mm
            vals.append(depth[m].max() / np.sqrt(area_mm2 / ph.spec.slice_mm))
        ratios[subtype] = np.median(vals)
    assert ratios["epidural"] > 1.5 * ratios["subdural"]


def test_ivh_is_in_ventricles_and_iph_in_parenchyma():
    ph = make_head_ct(PhantomSpec(subtypes=("intraventricular", "intraparenchymal"),
                                  seed=2, **SMALL))
    g, anat = _grid(ph), _anatomy(ph)
    vent = np.broadcast_to(anat.ventricles(g), ph.volume.array.shape)
    assert vent[ph.masks["intraventricular"].astype(bool)].all()
    assert not vent[ph.masks["intraparenchymal"].astype(bool)].any()
    assert "oedema" in ph.masks and ph.masks["oedema"].sum() > 0
    assert not (ph.masks["oedema"] & ph.masks["intraparenchymal"]).any()


def test_cohort_mixes_normals_and_positives():
    cohort = list(phantom_cohort(12, seed=9, shape=(12, 96, 96)))
    anys = [p.study_labels["any"] for p in cohort]
    assert 0 < sum(anys) < 12
    again = phantom_cohort(12, 9, (12, 96, 96))
    assert [p.spec.seed for p in cohort] == [p.spec.seed for p in again]
