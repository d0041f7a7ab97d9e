"""Legal-but-odd and plainly invalid header values, as real scanners and PACS send them, built by
the tests (nothing is shipped). Each `OddHeader` is one CT instance whose values are written as raw
bytes, exactly as given, with what the index must hold for them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from tests.integration.dicom_node.damaged_corpus import ct_dataset, part10


def set_raw(ds: Dataset, keyword: str, value: bytes) -> None:
    """Puts `value` into `ds` as the element's bytes (Explicit VR LE), with no validation."""
    tag = Tag(tag_for_keyword(keyword))
    if len(value) % 2:
        value += b"\0" if dictionary_VR(tag) == "UI" else b" "
    ds[tag] = RawDataElement(tag, dictionary_VR(tag), len(value), value, 0, False, True)


@dataclass(frozen=True)
class OddHeader:
    name: str
    values: Mapping[str, bytes]
    """Keyword -> the raw bytes sent."""
    expected: Mapping[str, object]
    """"table.column" -> what the index must hold."""
    charset: str | None = None

    def build(self) -> Dataset:
        ds = ct_dataset()
        if self.charset is not None:
            set_raw(ds, "SpecificCharacterSet", self.charset.encode())
        for keyword, value in self.values.items():
            set_raw(ds, keyword, value)
        return ds

    def write(self, folder: Path) -> tuple[Path, str]:
        """Writes the file; returns its path and Study Instance UID (one study per case)."""
        ds = self.build()
        path = folder / f"{self.name}.dcm"
        path.write_bytes(part10(ds))
        return path, str(ds.StudyInstanceUID)


JAPANESE = "頭部単純".encode("iso2022_jp")  # ESC $ B ... (ISO 2022 IR 87), then back to ASCII

ODD_HEADERS: tuple[OddHeader, ...] = (
    OddHeader("date-acr-nema", {"StudyDate": b"2026.01.01"}, {"studies.study_date": "20260101"}),
    OddHeader("date-hyphens", {"StudyDate": b"2026-01-02"}, {"studies.study_date": "20260102"}),
    OddHeader("date-slashes", {"StudyDate": b"01/02/2026"}, {"studies.study_date": None}),
    OddHeader("date-impossible", {"StudyDate": b"20261399"}, {"studies.study_date": None}),
    OddHeader("date-range", {"StudyDate": b"20260101-20260131"}, {"studies.study_date": None}),
    OddHeader("ids-too-long", {
        "PatientID": b"P" * 80, "AccessionNumber": b"A" * 70, "SeriesDescription": b"D" * 200,
        "ProtocolName": b"R" * 100, "BodyPartExamined": b"B" * 80,
    }, {
        "studies.patient_id": "P" * 64, "studies.accession_number": "A" * 64,
        "series.series_description": "D" * 64, "series.protocol_name": "R" * 64,
        "series.body_part_examined": "B" * 64,
    }),
    OddHeader("nul-in-patient-id", {"PatientID": b"PAT\x00123"},
              {"studies.patient_id": "PAT123"}),
    OddHeader("nul-padded-accession", {"AccessionNumber": b"ACC9\x00\x00"},
              {"studies.accession_number": "ACC9"}),
    OddHeader("instance-number-3e9", {"InstanceNumber": b"3000000000"},
              {"instances.instance_number": None}),
    OddHeader("instance-number-fraction", {"InstanceNumber": b"1.5"},
              {"instances.instance_number": None}),
    OddHeader("instance-number-negative", {"InstanceNumber": b"-5"},
              {"instances.instance_number": -5}),
    OddHeader("series-number-overflow", {"SeriesNumber": b"99999999999"},
              {"series.series_number": None}),
    OddHeader("slice-thickness-nan", {"SliceThickness": b"NaN"},
              {"series.slice_thickness": None}),
    OddHeader("slice-thickness-overflow", {"SliceThickness": b"1e999"},
              {"series.slice_thickness": None}),
    OddHeader("images-in-acquisition-text", {"ImagesInAcquisition": b"abc"},
              {"series.expected_count": None}),
    OddHeader("multi-valued-single", {"PatientID": b"A1\\B2", "Modality": b"CT\\MR"},
              {"studies.patient_id": "A1\\B2", "series.modality": "CT\\MR"}),
    OddHeader("latin-1", {"SeriesDescription": "Schädel nativ".encode("latin-1")},
              {"series.series_description": "Schädel nativ"}, charset="ISO_IR 100"),
    OddHeader("utf-8", {"SeriesDescription": "頭部 単純 CT".encode()},
              {"series.series_description": "頭部 単純 CT"}, charset="ISO_IR 192"),
    OddHeader("utf-8-longer-than-column", {"SeriesDescription": ("頭" * 100).encode()},
              {"series.series_description": "頭" * 64}, charset="ISO_IR 192"),
    OddHeader("iso-2022-ir-87", {"SeriesDescription": JAPANESE},
              {"series.series_description": "頭部単純"}, charset="\\ISO 2022 IR 87"),
    OddHeader("invalid-utf-8", {"SeriesDescription": b"Kopf \xff\xfe"},
              {"series.series_description": "Kopf \ufffd\ufffd"}, charset="ISO_IR 192"),
    OddHeader("unknown-charset", {"SeriesDescription": b"Head plain"},
              {"series.series_description": "Head plain"}, charset="ISO_IR 999"),
)
