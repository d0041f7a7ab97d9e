"""`load_standard_tables` loads what the encoders' first use would: a fresh SEG encode parses
highdicom's module attribute map itself, and after the preload no encode parses it again."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from highdicom._standard_utils import get_module_attribute_map

from dicom_node.encode import EncodeContext, Pipeline, encode_outputs, encode_seg
from dicom_node.encode.common import load_standard_tables
from dicom_node.encode.samples import ct_head_case, fixed_clock, sample_algorithm


@pytest.fixture
def fresh_tables() -> Iterator[None]:
    """As in a process that has not loaded the map yet (it reloads, ~0.5 s, when needed)."""
    get_module_attribute_map.cache_clear()
    yield


def _ctx(study_uid: str) -> EncodeContext:
    return EncodeContext.for_job(study_uid, Pipeline.ICH, sample_algorithm("ICH"),
                                 fixed_clock())


def test_the_first_encode_is_what_parses_the_map(fresh_tables: None) -> None:
    case = ct_head_case()
    encode_seg(case.sources, case.masks, _ctx(str(case.sources[0].StudyInstanceUID)))
    info = get_module_attribute_map.cache_info()
    assert info.misses == 1 and info.hits > 0


def test_after_the_preload_no_encode_parses_it(fresh_tables: None) -> None:
    load_standard_tables()
    assert get_module_attribute_map.cache_info().misses == 1
    load_standard_tables()  # again: nothing new
    assert get_module_attribute_map.cache_info().misses == 1
    case = ct_head_case()
    outputs = encode_outputs(case.sources, [*case.masks, *case.probabilities],
                             _ctx(str(case.sources[0].StudyInstanceUID)))
    assert outputs.seg is not None and outputs.kos is not None
    info = get_module_attribute_map.cache_info()
    assert info.misses == 1 and info.hits > 2
