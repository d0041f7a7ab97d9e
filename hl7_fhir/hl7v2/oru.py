"""HL7 v2.5.1 ORU^R01 (unsolicited observation result, chapter 7.3.1) for one AI report.

Structure: MSH, PID, ORC (RE), OBR (procedure, accession in OBR-3 and OBR-18, status P in
OBR-25), NTE (not verified), an OBX with the Study Instance UID (DCM 110180, as IHE Radiology
carries it), then per finding one OBX whose OBX-3 is the finding code and OBX-11 is P, with
its measures (probability, volume, finding site) as further OBX sharing its sub-id (OBX-4, the
v2 way to group observations), and the conclusion as FT OBX segments (one per 199 characters,
same OBX-3 and sub-id, the way multi-line report text travels in v2).

Identity fields are built in `segments`; texts are shaped by `hl7_fhir.text.shape` and then
fitted to each component's length, so a long or odd text never fails strict validation.
"""

from __future__ import annotations

from collections.abc import Sequence

from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.exceptions import HL7apyException
from hl7apy.parser import parse_message

from hl7_fhir import codes
from hl7_fhir.hl7v2 import er7, segments
from hl7_fhir.text import shape
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

VERSION = segments.VERSION
RESULT_STATUS_PRELIMINARY = "P"  # table 0123 (OBR-25) and table 0085 (OBX-11)


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
    if finding.lesion_count is not None:
        measures.append(("NM", {3: er7.coded_pair(codes.SNOMED, codes.NUMBER_OF_LESIONS),
                                5: str(finding.lesion_count),
                                6: er7.coded_pair(codes.UCUM, codes.LESIONS)}))
    if finding.body_site is not None:
        site_name = er7.coded_pair(codes.SNOMED, codes.FINDING_SITE)
        measures.append(("CWE", {3: site_name, 5: er7.coded(finding.body_site)}))
    if finding.laterality is not None:
        side_name = er7.coded_pair(codes.SNOMED, codes.LATERALITY)
        measures.append(("CWE", {3: side_name, 5: er7.coded(finding.laterality)}))
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

    Times: OBR-7 and OBX-14 are the study's local date and time with the study's offset
    (TimezoneOffsetFromUTC, else `options.timezone`, else UTC); MSH-7, ORC-9, OBR-22 and
    OBX-19 are the clock's instant, shown in `options.timezone` when one is configured.

    `control_id` (MSH-10) must be unique per message sent; the ACK echoes it. Raises
    `ValueError` when the result does not parse strictly with hl7apy (a bug, not bad input:
    inputs are validated by their types).
    """
    opts = options or EncodeOptions()
    if not control_id or len(control_id) > 199:
        raise ValueError("control_id must be 1 to 199 characters")
    sent = now(clock)
    observed = study_datetime(study, opts.timezone) or sent
    filler = segments.filler_order(study, device, opts)
    placer = segments.placer_order(study)
    equipment = er7.components(f"{device.name} {device.version}", None, device.device_uid, "ISO")
    sent_ts = er7.dtm(sent, opts.timezone)
    times = {14: er7.dtm(observed), 19: sent_ts}
    note = shape(f"AI result by {device.name} {device.version}; preliminary, not verified "
                 "by a clinician.", limit=er7.MAX_COMPONENT)

    message = [
        segments.msh(opts, sent, control_id),
        segments.pid(study, opts),
        er7.segment("ORC", {1: "RE", 2: placer, 3: filler, 9: sent_ts}),
        er7.segment(
            "OBR",
            {
                1: "1",
                2: placer,
                3: filler,
                4: er7.coded(study.procedure_code),
                7: er7.dtm(observed),
                18: er7.fit(study.accession_number or ""),
                22: sent_ts,
                24: codes.RADIOLOGY_V2[0],
                25: RESULT_STATUS_PRELIMINARY,
            },
        ),
        er7.segment("NTE", {1: "1", 2: "L", 3: er7.fit(note, formatted=True)}),
        _obx(1, "ST", {3: er7.coded_pair(codes.DCM, codes.STUDY_INSTANCE_UID),
                       5: study.study_instance_uid, **times}),
    ]
    set_id = 2
    for group, finding in enumerate(findings, start=1):
        obx = _finding_obx(finding, group, set_id, times, equipment)
        message.extend(obx)
        set_id += len(obx)
    if conclusion is not None:
        text = conclusion if isinstance(conclusion, str) else conclusion.text
        name = er7.coded_pair(codes.LOINC, codes.IMPRESSION)
        sub_id = str(len(findings) + 1)
        for offset, piece in enumerate(er7.formatted_lines(shape(text, study))):
            message.append(_obx(set_id + offset, "FT", {3: name, 4: sub_id, 5: piece, **times}))
    text = er7.message(message)
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
