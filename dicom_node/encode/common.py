"""What every output object shares: codes as highdicom concepts, the AI series description,
the IHE AIR Contributing Equipment item, tracking identifiers, algorithm identification and the
device observer context, and stamping dates from the injected clock."""

from __future__ import annotations

from datetime import datetime

import highdicom as hd
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes as dcm_codes
from pydicom.valuerep import DA, DT, TM

from dicom_node.encode.codes import PROCESSING_ALGORITHM, Coded
from dicom_node.encode.source import REPEATED_TYPE2, character_set, known_character_set
from dicom_node.encode.text import shape_text
from dicom_node.encode.types import EncodeContext

AI_NOTICE = "AI-generated, not verified"
"""Start of every output Series Description (STANDARDS.md, "DICOM, every output")."""


def load_standard_tables() -> None:
    """Loads highdicom's tables of the standard (SOP class -> IOD -> modules -> attributes)
    now instead of inside the first encode. Every highdicom SOP class constructor reads them
    (`SOPClass` looks Content Date up in the IOD's modules, `copy_patient_and_study_information`
    walks the Patient and Study modules), and the first read parses the 22 MB
    module_attribute_map.json: about 0.4 s holding the GIL, +65 MB RSS (+108 MB at the peak of
    the parse). A process that encodes calls this when it starts, before it takes jobs, so a
    first job never stalls the associations that the same process is receiving meanwhile.
    highdicom caches the tables for the life of the process, so later calls cost nothing.
    The loaders are highdicom's private functions (tested with the pinned version): where a
    release moves them, nothing is preloaded and the first encode loads the tables as before."""
    try:
        from highdicom._standard_utils import (
            get_iod_module_map,
            get_module_attribute_map,
            get_sop_class_iod_map,
        )
    except ImportError:
        return
    get_sop_class_iod_map()
    get_iod_module_map()
    get_module_attribute_map()


def concept(code: Coded) -> hd.sr.CodedConcept:
    """A plain code as a highdicom concept (PS3.3 8.8 Code Sequence Macro)."""
    return hd.sr.CodedConcept(value=code.value, scheme_designator=code.scheme, meaning=code.meaning)


def series_description(ctx: EncodeContext, kind: str, source: Dataset | None = None) -> str:
    """"AI-generated, not verified: <kind> <algorithm> <version>", shaped for LO (64
    characters, PS3.5 6.2) in the character set of `source` (which the output repeats)."""
    text = f"{AI_NOTICE}: {kind} {ctx.algorithm.name} {ctx.algorithm.version}"
    charset = character_set(source) if source is not None else None
    return shape_text(text, "LO", charset)


def device_uid(ctx: EncodeContext) -> str:
    """Device UID of the algorithm; changes when the weights change (IHE AIR)."""
    return ctx.uids.device_uid(ctx.algorithm.weights_sha256)


def device_serial_number(ctx: EncodeContext) -> str:
    """The weights' digest prefix: identifies the exact weights a result came from."""
    return ctx.algorithm.weights_sha256[:16]


def tracking(ctx: EncodeContext, label: str) -> tuple[str, str]:
    """(Tracking ID, Tracking UID) of one finding, shared by its SEG segment and SR group
    (PS3.3 C.8.20.4 Segment Description; PS3.16 TID 4108)."""
    return f"{ctx.pipeline.value}:{label}", ctx.uids.uid(f"tracking:{label}")


def air_contributing_equipment(
    ctx: EncodeContext, when: datetime, charset: str | list[str] | None = None
) -> Dataset:
    """The IHE AIR Contributing Equipment Sequence (0018,A001) item for the algorithm:
    purpose (Newcode1, 99IHE, "Processing Algorithm"), Manufacturer, Manufacturer's Model
    Name, Software Versions and Device UID (PS3.3 C.12.1.1.4; IHE Rad TF-3 AIR).

    Model Name and Software Versions carry the algorithm's name and version, so they equal the
    SR's Algorithm Name (111001) and Version (111003) as STANDARDS.md asks; the product model
    name goes to the General Equipment module and the device observer.

    highdicom's own ContributingEquipment accepts only DCM purposes, hence a plain Dataset.
    """
    purpose = Dataset()
    purpose.CodeValue = PROCESSING_ALGORITHM.value
    purpose.CodingSchemeDesignator = PROCESSING_ALGORITHM.scheme
    purpose.CodeMeaning = PROCESSING_ALGORITHM.meaning
    item = Dataset()
    item.PurposeOfReferenceCodeSequence = [purpose]
    item.Manufacturer = ctx.algorithm.manufacturer
    item.ManufacturerModelName = ctx.algorithm.name
    item.SoftwareVersions = ctx.algorithm.version
    item.DeviceSerialNumber = device_serial_number(ctx)
    item.DeviceUID = device_uid(ctx)
    item.ContributionDateTime = DT(when)
    item.ContributionDescription = shape_text(
        f"{AI_NOTICE}: {ctx.algorithm.model_name}", "ST", charset
    )
    return item


_STUDY_ATTRIBUTES = ("StudyDescription", "AccessionNumber", "ReferringPhysicianName", "StudyID")
"""General Study attributes (PS3.3 C.7.2.1) every output repeats from its source, so the
study reads the same whichever instance a PACS indexes first (highdicom's KOS omits some)."""


def finish(ds: Dataset, ctx: EncodeContext, when: datetime, source: Dataset,
           original: Dataset | None = None) -> None:
    """Stamps creation, content and series date/time from the injected clock (highdicom reads
    the system clock), repeats the source's Patient and General Study attributes (`source` is
    the ``tolerant_source`` copy: Type 2 ones always present, values as the source has them),
    and appends the AIR item to the Contributing Equipment Sequence. `original` is the
    source as read (before highdicom decoded the copy's values): a valid Person Name is
    written from its bytes."""
    if known_character_set(source):
        # The source's own value, so every text it has is written with the same bytes.
        charset = source["SpecificCharacterSet"]
        ds[charset.tag] = DataElement(charset.tag, "CS", charset.value)
    for keyword in (*REPEATED_TYPE2, *_STUDY_ATTRIBUTES):
        if keyword not in source:
            continue
        element = source[keyword]
        raw = original.get_item(keyword) if original is not None else None
        if element.VR == "PN" and isinstance(raw, RawDataElement) and isinstance(raw.value,
                                                                                 bytes):
            # A name exactly as the source's bytes (tolerant_source never empties a PN):
            # decoding and re-encoding would drop an empty trailing component group or a
            # closing escape sequence (PS3.5 6.1, 6.2.1).
            ds[element.tag] = DataElement(element.tag, "PN", raw.value)
        else:
            ds[element.tag] = DataElement(element.tag, element.VR, element.value)
    date, time = DA(when.date()), TM(when.time().replace(microsecond=0))
    ds.InstanceCreationDate = date
    ds.InstanceCreationTime = time
    ds.ContentDate = date
    ds.ContentTime = time
    ds.SeriesDate = date
    ds.SeriesTime = time
    equipment = list(ds.get("ContributingEquipmentSequence", []))
    processing = dcm_codes.DCM.ProcessingEquipment.value
    for item in equipment:
        # highdicom stamps its own item with the system clock; a re-run must not differ.
        if item.PurposeOfReferenceCodeSequence[0].CodeValue == processing:
            item.ContributionDateTime = DT(when)
    equipment.append(air_contributing_equipment(ctx, when, character_set(source)))
    ds.ContributingEquipmentSequence = equipment


def seg_algorithm_identification(ctx: EncodeContext) -> hd.AlgorithmIdentificationSequence:
    """Segmentation Algorithm Identification (PS3.3 C.8.20.4; family 123110 DCM)."""
    return hd.AlgorithmIdentificationSequence(
        name=ctx.algorithm.name,
        family=concept(ctx.algorithm.family),
        version=ctx.algorithm.version,
        source=ctx.algorithm.manufacturer,
    )


def sr_algorithm_identification(ctx: EncodeContext) -> hd.sr.AlgorithmIdentification:
    """TID 4019 Algorithm Identification: name (111001) and version (111003)."""
    return hd.sr.AlgorithmIdentification(name=ctx.algorithm.name, version=ctx.algorithm.version)


def device_observer(ctx: EncodeContext) -> hd.sr.ObserverContext:
    """TID 1002 observer context of type Device, with the TID 1004 identifying attributes."""
    return hd.sr.ObserverContext(
        observer_type=dcm_codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=device_uid(ctx),
            name=ctx.algorithm.name,
            manufacturer_name=ctx.algorithm.manufacturer,
            model_name=ctx.algorithm.model_name,
        ),
    )
