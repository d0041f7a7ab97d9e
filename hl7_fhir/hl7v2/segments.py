"""The identity segments and fields of an ORU^R01 (HL7 v2.5.1): MSH, PID and the order
numbers of ORC/OBR.

- MSH-3..6 from `EncodeOptions`; MSH-18 declares UNICODE UTF-8 (table 0211): the message text
  is Unicode and the MLLP client sends it as UTF-8.
- PID-3 (CX, 2.A.14): Patient ID ^^^ assigning authority (HD: IssuerOfPatientID, or the
  configured authority; with the issuer's universal ID and its type when known) ^ MR.
- PID-5 (XPN, 2.A.89): one repetition per DICOM PN component group, name type L (table 0200),
  name representation code A / I / P (table 4000).
- ORC-2/OBR-2 placer order number and ORC-3/OBR-3 filler order number (EI, 2.A.25): the
  accession exactly as the RIS issued it in EI.1; the accession issuer, or the configured
  filler namespace, only in EI.2.
"""

from __future__ import annotations

from datetime import datetime

from hl7_fhir.fhir.ids import report_key, stable_uuid
from hl7_fhir.hl7v2 import er7
from hl7_fhir.identity import issuer_system, name_groups, patient_system
from hl7_fhir.types import DeviceInfo, EncodeOptions, StudyFacts

VERSION = "2.5.1"
CHARACTER_SET = "UNICODE UTF-8"  # table 0211
MESSAGE_TYPE = "ORU^R01^ORU_R01"


def msh(opts: EncodeOptions, sent: datetime, control_id: str) -> str:
    """MSH (2.15.9). MSH-7 with its offset, shown in the site zone when one is configured."""
    # MSH-1 is the field separator itself, so MSH-2 is the first joined field.
    fields = {
        2: er7.ENCODING_CHARACTERS,
        3: er7.namespace(opts.sending_application),
        4: er7.namespace(opts.sending_facility),
        5: er7.namespace(opts.receiving_application),
        6: er7.namespace(opts.receiving_facility),
        7: er7.dtm(sent, opts.timezone),
        9: MESSAGE_TYPE,
        10: er7.escape(control_id),
        11: opts.processing_id,
        12: VERSION,
        18: CHARACTER_SET,
    }
    return er7.FIELD.join(["MSH", *(fields.get(i, "") for i in range(2, max(fields) + 1))])


def _universal_id(study: StudyFacts, opts: EncodeOptions) -> tuple[str, str]:
    """HD.2 universal ID and HD.3 its type (table 0301) for the Patient ID's authority."""
    uid = (study.patient_id_issuer_universal_id or "").strip()
    kind = (study.patient_id_issuer_universal_id_type or "").strip().upper()
    if uid and kind in {"ISO", "URI", "UUID", "DNS"}:
        return uid, kind
    system = issuer_system(study) or patient_system(study, opts) or ""
    if system.startswith("urn:oid:"):
        return system[len("urn:oid:"):], "ISO"
    if system:
        return system, "URI"
    return "", ""


def assigning_authority(study: StudyFacts, opts: EncodeOptions) -> str:
    """CX.4 (HD as subcomponents): the study's IssuerOfPatientID when it fits an IS namespace,
    else the configured `patient_id_authority`; universal ID and type when known."""
    name = er7.namespace(study.patient_id_issuer) or er7.namespace(opts.patient_id_authority)
    uid, kind = _universal_id(study, opts)
    parts = [name, er7.escape(uid) if len(er7.escape(uid)) <= er7.MAX_COMPONENT else "", kind]
    if not parts[1]:
        parts[2] = ""
    while parts and not parts[-1]:
        parts.pop()
    return er7.SUBCOMPONENT.join(parts)


def _names(pn: str | None) -> str:
    groups = name_groups(pn)
    if not groups:
        # PID-5 is required; an unknown name is sent as name type U (unspecified, table 0200)
        # rather than "" which would tell the receiver to erase the name it has.
        return "^^^^^^U"
    # DICOM PN is family^given^middle^prefix^suffix; XPN is family^given^middle^suffix^prefix.
    return er7.REPETITION.join(
        er7.join_components(
            er7.fit(g.family), er7.fit(g.given), er7.fit(g.middle), er7.fit(g.suffix),
            er7.fit(g.prefix), "", "L", g.representation,
        )
        for g in groups
    )


def pid(study: StudyFacts, opts: EncodeOptions) -> str:
    """PID (3.4.2): PID-3 identifier with assigning authority and type MR (table 0203), PID-5
    every name group."""
    pid3 = er7.join_components(
        er7.fit(study.patient_id), "", "", assigning_authority(study, opts), "MR"
    )
    return er7.segment("PID", {1: "1", 3: pid3, 5: _names(study.patient_name)})


def placer_order(study: StudyFacts) -> str:
    """ORC-2/OBR-2: the placer order number with the placer's namespace, or empty."""
    if not study.placer_order_number:
        return ""
    return er7.join_components(
        er7.fit(study.placer_order_number), er7.namespace(study.placer_order_issuer)
    )


def filler_order(study: StudyFacts, device: DeviceInfo, opts: EncodeOptions) -> str:
    """ORC-3/OBR-3: the accession exactly as issued, namespaced (EI.2) by its DICOM issuer or
    the configured filler namespace. Without an accession a stable id of the job stands in,
    namespaced by the node (it issued that one)."""
    if study.accession_number:
        issuer = er7.namespace(study.accession_issuer) or er7.namespace(
            opts.order_filler_namespace
        )
        return er7.join_components(er7.fit(study.accession_number), issuer)
    entity = stable_uuid("order", report_key(study, device)).hex
    return er7.join_components(entity, er7.namespace(opts.sending_application))
