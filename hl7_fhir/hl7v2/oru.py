"""HL7 v2.5.1 ORU^R01 (unsolicited observation result, chapter 7.3.1) for one AI report.

Structure: MSH, PID, ORC (RE), OBR (procedure, accession in OBR-18, status P in OBR-25), NTE
(not verified), then per finding one OBX whose OBX-3 is the finding code and OBX-11 is P, with
its measures (probability, volume, finding site) as further OBX sharing its sub-id (OBX-4, the
v2 way to group observations), and a closing FT OBX with the conclusion.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.exceptions import HL7apyException
from hl7apy.parser import parse_message

from hl7_fhir import codes
from hl7_fhir.fhir.ids import report_key, stable_uuid
from hl7_fhir.hl7v2 import er7
from hl7_fhir.types import (
    Clock,
    Conclusion,
    DeviceInfo,
    EncodeOptions,
    Finding,
    StudyFacts,
    now,
    study_datetime,
)

VERSION = "2.5.1"
RESULT_STATUS_PRELIMINARY = "P"  # table 0123 (OBR-25) and table 0085 (OBX-11)


def _msh(opts: EncodeOptions, sent: datetime, control_id: str) -> str:
    # MSH-1 is the field separator itself, so MSH-2 is the first joined field (section 2.14.9).
    fields = {
        2: er7.ENCODING_CHARACTERS,
        3: er7.components(opts.sending_application),
        4: er7.components(opts.sending_facility),
        5: er7.components(opts.receiving_application),
        6: er7.components(opts.receiving_facility),
        7: er7.dtm(sent),
        9: "ORU^R01^ORU_R01",
        10: er7.escape(control_id),
        11: opts.processing_id,
        12: VERSION,
        18: "UNICODE UTF-8",
    }
    return er7.FIELD.join(["MSH", *(fields.get(i, "") for i in range(2, max(fields) + 1))])


def _pid(study: StudyFacts) -> str:
    # PID-3 CX: ID^^^assigning authority^identifier type (MR, table 0203).
    pid3 = er7.components(study.patient_id, None, None, study.patient_id_issuer, "MR")
    # PID-5 is required; an unknown name is sent as name type U (unspecified, table 0200)
    # rather than "" which would tell the receiver to erase the name it has.
    pid5 = "^^^^^^U"
    if study.patient_name and study.patient_name.strip("^= "):
        # DICOM PN is family^given^middle^prefix^suffix; XPN is family^given^middle^suffix^prefix.
        parts = (study.patient_name.split("=")[0].split("^") + [""] * 5)[:5]
        family, given, middle, prefix, suffix = (p.strip() for p in parts)
        pid5 = er7.components(family, given, middle, suffix, prefix)
    return er7.segment("PID", {1: "1", 3: pid3, 5: pid5})


def _filler_order(study: StudyFacts, device: DeviceInfo, opts: EncodeOptions) -> str:
    # EI: entity identifier^namespace. The accession is the filler order number radiology
    # systems match on; without one, a stable id of the job stands in.
    entity = study.accession_number or stable_uuid("order", report_key(study, device)).hex
    return er7.components(entity, opts.sending_application)


def _obx(set_id: int, value_type: str, fields: dict[int, str]) -> str:
    return er7.segment(
        "OBX", {1: str(set_id), 2: value_type, 11: RESULT_STATUS_PRELIMINARY, **fields}
    )


def _finding_obx(
    finding: Finding, group: int, first_id: int, times: dict[int, str], device: str
) -> list[str]:
    """The OBX segments of one finding: the finding itself first, its measures after."""
    sub_id = str(group)
    common = {4: sub_id, **times, 18: device}
    main: dict[int, str] = {3: er7.coded(finding.code), **common}
    measures: list[tuple[str, dict[int, str]]] = []
    probability = None
    if finding.probability is not None:
        probability = {
            5: f"{finding.probability:.4g}",
            6: er7.coded_pair(codes.UCUM, codes.UNITY),
        }
    volume = None
    if finding.volume_ml is not None:
        volume = {5: f"{finding.volume_ml:.6g}", 6: er7.coded_pair(codes.UCUM, codes.ML)}

    if finding.presence is not None:
        pair = codes.PRESENT if finding.presence else codes.ABSENT
        if finding.presence:
            flag = codes.CRITICAL[0] if finding.critical else codes.ABNORMAL[0]
        else:
            flag = codes.NORMAL[0]
        segments = [_obx(first_id, "CWE", {**main, 5: er7.coded_pair(codes.SNOMED, pair), 8: flag})]
    elif probability is not None:
        segments = [_obx(first_id, "NM", {**main, **probability})]
        probability = None
    else:
        assert volume is not None  # Finding guarantees one of the three values
        segments = [_obx(first_id, "NM", {**main, **volume})]
        volume = None

    if probability is not None:
        measures.append(("NM", {3: er7.coded_pair(codes.DCM, codes.PROBABILITY), **probability}))
    if volume is not None:
        measures.append(("NM", {3: er7.coded_pair(codes.SNOMED, codes.VOLUME), **volume}))
    if finding.body_site is not None:
        site_name = er7.coded_pair(codes.SNOMED, codes.FINDING_SITE)
        measures.append(("CWE", {3: site_name, 5: er7.coded(finding.body_site)}))
    for offset, (value_type, fields) in enumerate(measures, start=1):
        segments.append(_obx(first_id + offset, value_type, {**fields, **common}))
    return segments


def build_oru(
    study: StudyFacts,
    findings: Sequence[Finding],
    device: DeviceInfo,
    clock: Clock,
    control_id: str,
    *,
    conclusion: Conclusion | str | None = None,
    options: EncodeOptions | None = None,
) -> str:
    """Build the ORU^R01 message as ER7 text (segments ended by CR, no MLLP framing).

    `control_id` (MSH-10) must be unique per message sent; the ACK echoes it. Raises
    `ValueError` when the result does not parse strictly with hl7apy (a bug, not bad input:
    inputs are validated by their types).
    """
    opts = options or EncodeOptions()
    if not control_id or len(control_id) > 199:
        raise ValueError("control_id must be 1 to 199 characters")
    sent = now(clock)
    observed = study_datetime(study, opts.timezone) or sent
    filler = _filler_order(study, device, opts)
    equipment = er7.components(f"{device.name} {device.version}", None, device.device_uid, "ISO")
    times = {14: er7.dtm(observed), 19: er7.dtm(sent)}

    segments = [
        _msh(opts, sent, control_id),
        _pid(study),
        er7.segment("ORC", {1: "RE", 3: filler, 9: er7.dtm(sent)}),
        er7.segment(
            "OBR",
            {
                1: "1",
                3: filler,
                4: er7.coded(study.procedure_code),
                7: er7.dtm(observed),
                18: er7.escape(study.accession_number or ""),
                22: er7.dtm(sent),
                24: codes.RADIOLOGY_V2[0],
                25: RESULT_STATUS_PRELIMINARY,
            },
        ),
        er7.segment(
            "NTE",
            {1: "1", 2: "L", 3: er7.escape(f"AI result by {device.name} {device.version}; "
                                           "preliminary, not verified by a clinician.")},
        ),
    ]
    set_id = 1
    for group, finding in enumerate(findings, start=1):
        obx = _finding_obx(finding, group, set_id, times, equipment)
        segments.extend(obx)
        set_id += len(obx)
    if conclusion is not None:
        text = conclusion if isinstance(conclusion, str) else conclusion.text
        segments.append(
            _obx(
                set_id,
                "FT",
                {3: er7.coded_pair(codes.LOINC, codes.IMPRESSION),
                 5: er7.escape(text, formatted=True), **times},
            )
        )
    text = er7.message(segments)
    validate_strict(text)
    return text


def validate_strict(text: str) -> None:
    """Parse `text` with hl7apy at STRICT level and validate it against the v2.5.1 ORU_R01
    structure. Raises `ValueError` naming hl7apy's error type; the cause carries the detail."""
    try:
        parsed = parse_message(
            text.replace("\n", "\r"),
            validation_level=VALIDATION_LEVEL.STRICT,
            find_groups=True,
        )
        parsed.validate()
    except HL7apyException as exc:
        # hl7apy's text may quote field values (PHI), so only its error type is named here.
        raise ValueError(
            f"ORU^R01 fails strict HL7 v2.5.1 validation ({type(exc).__name__})"
        ) from exc
