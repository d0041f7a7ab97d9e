"""Loaders on tiny fixtures in the RSNA ICH layout (stub reader over .npy) and NIfTI + masks."""

import csv
import json

import nibabel as nib
import numpy as np
import pytest

from inference.errors import InputError
from inference.evaluation.datasets import (
    RsnaSlice,
    nifti_dataset,
    read_rsna_labels,
    rsna_dataset,
)
from inference.ich.labels import ICH_CLASSES


def _rsna_fixture(root):
    """Two studies; study B's slices listed out of order; one SDH slice in B."""
    imgs = root / "stage_2_train"
    imgs.mkdir()
    meta = {}
    layout = [("A", 0, 10.0), ("A", 1, 15.0), ("B", 2, 35.0), ("B", 3, 25.0), ("B", 4, 30.0)]
    positive = {"ID_img4": ["subdural", "any"]}
    rows = []
    for study, k, z in layout:
        image = f"ID_img{k}"
        np.save(imgs / f"{image}.npy", np.full((8, 8), k, dtype=np.int16))
        meta[image] = {"study": study, "z": z}
        for cls in ICH_CLASSES:
            rows.append({"ID": f"{image}_{cls}", "Label": int(cls in positive.get(image, []))})
    with (root / "labels.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, ["ID", "Label"])
        w.writeheader()
        w.writerows(rows)
    (root / "meta.json").write_text(json.dumps(meta))

    def reader(path):
        m = json.loads((root / "meta.json").read_text())[path.stem]
        return RsnaSlice(pixels=np.load(path).astype(np.float32), study_key=m["study"],
                         position_mm=m["z"], pixel_mm=(0.5, 0.5))

    return reader


def test_rsna_labels_and_studies(tmp_path):
    reader = _rsna_fixture(tmp_path)
    labels = read_rsna_labels(tmp_path / "labels.csv")
    assert labels["ID_img4"]["subdural"] == 1 and labels["ID_img4"]["epidural"] == 0
    studies = list(rsna_dataset(tmp_path, reader, "labels.csv", "stage_2_train", ".npy"))
    assert [s.study_id for s in studies] == ["A", "B"]
    a, b = studies
    assert a.labels["any"] == 0 and b.labels["any"] == 1 and b.labels["subdural"] == 1
    # B sorted by position: img3 (25), img4 (30), img2 (35)
    assert b.volume.slice_ids == ("ID_img3", "ID_img4", "ID_img2")
    assert [int(b.volume.array[i, 0, 0]) for i in range(3)] == [3, 4, 2]
    assert b.slice_labels[:, ICH_CLASSES.index("subdural")].tolist() == [0, 1, 0]
    assert b.volume.spacing == (5.0, 0.5, 0.5)


def test_rsna_missing_image_and_bad_id(tmp_path):
    reader = _rsna_fixture(tmp_path)
    (tmp_path / "stage_2_train" / "ID_img2.npy").unlink()
    with pytest.raises(InputError, match="ID_img2.npy"):
        list(rsna_dataset(tmp_path, reader, "labels.csv", "stage_2_train", ".npy"))
    (tmp_path / "bad.csv").write_text("ID,Label\nID_x_nonsense,1\n")
    with pytest.raises(InputError, match="unexpected ID"):
        read_rsna_labels(tmp_path / "bad.csv")


def test_nifti_images_and_masks(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    data = np.zeros((10, 12, 6), dtype=np.int16)  # (i, j, k) = (x, y, z)
    data[2, 3, 4] = 77
    affine = np.diag([0.5, 0.6, 5.0, 1.0])
    nib.save(nib.Nifti1Image(data, affine), str(tmp_path / "images" / "case1.nii.gz"))
    lab = np.zeros_like(data, dtype=np.uint8)
    lab[2:4, 3:5, 4] = 2  # subdural on slice k=4
    lab[5, 5, 1] = 5      # intraventricular on slice k=1
    nib.save(nib.Nifti1Image(lab, affine), str(tmp_path / "masks" / "case1.nii.gz"))
    nib.save(nib.Nifti1Image(data, affine), str(tmp_path / "images" / "case2.nii.gz"))
    cases = list(nifti_dataset(tmp_path))
    assert [c.study_id for c in cases] == ["case1", "case2"]
    c1, c2 = cases
    assert c1.volume.array.shape == (6, 12, 10)
    assert c1.volume.array[4, 3, 2] == 77
    assert np.allclose(c1.volume.spacing, (5.0, 0.6, 0.5))
    # voxel (z=4, y=3, x=2) -> RAS (1.0, 1.8, 20) -> LPS (-1.0, -1.8, 20)
    assert np.allclose(c1.volume.affine @ [4, 3, 2, 1], [-1.0, -1.8, 20.0, 1.0], atol=1e-5)
    assert c1.labels == {"any": 1, "epidural": 0, "subdural": 1, "subarachnoid": 0,
                         "intraparenchymal": 0, "intraventricular": 1}
    assert c1.masks["subdural"].sum() == 4 and c1.masks["subdural"][4].sum() == 4
    assert c1.slice_labels[:, 0].tolist() == [0, 1, 0, 0, 1, 0]
    assert c2.labels["any"] == 0 and c2.masks == {}
