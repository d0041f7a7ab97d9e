"""Deterministic output UIDs: the job key decides them (DESIGN.md, "Jobs are idempotent")."""

from __future__ import annotations

import re
from io import BytesIO

import pytest

from dicom_node.encode import EncodeContext, Pipeline, UidFactory, derive_uid, encode_outputs
from dicom_node.encode.samples import ct_head_case, fixed_clock, sample_algorithm

UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))+$")
NAMES = ("seg.series", "seg.sop", "sr.series", "sr.sop", "ko.series", "ko.sop", "tracking:IPH")


def test_same_key_same_uids_and_all_distinct() -> None:
    a = UidFactory("1.2.3", "ich", "1.0.0")
    b = UidFactory("1.2.3", "ich", "1.0.0")
    uids = [a.uid(n) for n in NAMES]
    assert uids == [b.uid(n) for n in NAMES]
    assert len(set(uids)) == len(uids)
    for uid in uids:
        assert UID.match(uid) and len(uid) <= 64 and uid.startswith("2.25.")
        assert int(uid[5:]) < 2**128


@pytest.mark.parametrize(
    "other",
    [
        UidFactory("1.2.3", "ich", "1.0.1"),  # model version
        UidFactory("1.2.3", "stroke", "1.0.0"),  # pipeline
        UidFactory("1.2.4", "ich", "1.0.0"),  # study
    ],
)
def test_any_part_of_the_key_changes_every_uid(other: UidFactory) -> None:
    base = UidFactory("1.2.3", "ich", "1.0.0")
    assert all(base.uid(n) != other.uid(n) for n in NAMES)


def test_device_uid_follows_the_weights_only() -> None:
    f = UidFactory("1.2.3", "ich", "1.0.0")
    g = UidFactory("9.9.9", "stroke", "2.0.0")
    assert f.device_uid("a" * 64) == g.device_uid("a" * 64)
    assert f.device_uid("a" * 64) != f.device_uid("b" * 64)


def test_organisational_root() -> None:
    root = "1.2.826.0.1.3680043.10.1563.1."
    uid = derive_uid(root, "key")
    assert uid.startswith(root) and UID.match(uid) and len(uid) == 64
    assert uid == derive_uid(root, "key") != derive_uid(root, "other key")


@pytest.mark.parametrize("root", ["1.2", "1.02.3.", "abc.", "1." + "2." * 20])
def test_bad_roots_are_refused(root: str) -> None:
    with pytest.raises(ValueError):
        UidFactory("1.2.3", "ich", "1.0.0", root=root)


def _encode(version: str, weights: bytes = b"w"):
    case = ct_head_case()
    algorithm = sample_algorithm("ICH", version, weights)
    ctx = EncodeContext.for_job(
        str(case.sources[0].StudyInstanceUID), Pipeline.ICH, algorithm, fixed_clock()
    )
    return case, encode_outputs(case.sources, [*case.masks, *case.probabilities], ctx)


def _bytes(ds) -> bytes:
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def test_a_rerun_replaces_and_a_new_model_version_does_not() -> None:
    case, first = _encode("1.0.0")
    ctx = EncodeContext.for_job(
        str(case.sources[0].StudyInstanceUID), Pipeline.ICH,
        sample_algorithm("ICH", "1.0.0", b"w"), fixed_clock(),
    )
    again = encode_outputs(case.sources, [*case.masks, *case.probabilities], ctx)
    for kind in ("seg", "sr", "kos"):
        # Same job, same sources: the very same objects, byte for byte.
        assert _bytes(getattr(first, kind)) == _bytes(getattr(again, kind))
    newer = encode_outputs(
        case.sources, [*case.masks, *case.probabilities],
        EncodeContext.for_job(str(case.sources[0].StudyInstanceUID), Pipeline.ICH,
                              sample_algorithm("ICH", "1.1.0", b"w"), fixed_clock()),
    )
    for kind in ("seg", "sr", "kos"):
        a, b = getattr(first, kind), getattr(newer, kind)
        assert a.SOPInstanceUID != b.SOPInstanceUID
        assert a.SeriesInstanceUID != b.SeriesInstanceUID


def test_an_amendment_writes_new_instances_and_amendment_0_keeps_the_job_key_uids() -> None:
    # A PACS keeps the first copy of a SOP Instance UID: the objects of a study's later
    # completion (a late series) must be new instances, or the earlier result stays on show.
    case, first = _encode("1.0.0")
    study = str(case.sources[0].StudyInstanceUID)
    algorithm = sample_algorithm("ICH", "1.0.0", b"w")
    explicit_0 = encode_outputs(case.sources, [*case.masks, *case.probabilities],
                                EncodeContext.for_job(study, Pipeline.ICH, algorithm,
                                                      fixed_clock(), amendment=0))
    amended = encode_outputs(case.sources, [*case.masks, *case.probabilities],
                             EncodeContext.for_job(study, Pipeline.ICH, algorithm,
                                                   fixed_clock(), amendment=1))
    amended_again = encode_outputs(case.sources, [*case.masks, *case.probabilities],
                                   EncodeContext.for_job(study, Pipeline.ICH, algorithm,
                                                         fixed_clock(), amendment=1))
    for kind in ("seg", "sr", "kos"):
        a, b = getattr(first, kind), getattr(amended, kind)
        assert getattr(explicit_0, kind).SOPInstanceUID == a.SOPInstanceUID
        assert a.SOPInstanceUID != b.SOPInstanceUID
        assert a.SeriesInstanceUID != b.SeriesInstanceUID
        # A re-run of the amendment's own job still replaces its objects.
        assert _bytes(b) == _bytes(getattr(amended_again, kind))
