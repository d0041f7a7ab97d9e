"""Final reports fed over real MLLP (hl7_fhir's own MLLP client to the node's listener) are
labelled, matched to the AI results by accession and give the agreement figures; readers'
agree/disagree counts where no report decides; a broken store is answered AE, a message that
is not a report AR."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import binomtest
from sqlalchemy import select

from hl7_fhir.errors import PermanentDeliveryError, TransientDeliveryError
from hl7_fhir.hl7v2.listener import MllpListener
from hl7_fhir.hl7v2.mllp import send_mllp
from infernode.db import create_engine, migrate
from tests.integration.workers.monitoring.monitoring_support import (
    BEFORE,
    analysed_summary,
    finish_job,
)
from workers.config import WorkersConfig
from workers.monitoring.agreement import agreement, record_feedback, record_report
from workers.monitoring.config import default_label_rules
from workers.monitoring.tables import monitoring_labels

AT = datetime(2026, 11, 10, 9, 0, tzinfo=UTC)

# (accession, AI positive, report text or coded finding) -> the truth the rules must find
CASES = [
    ("ACC001", True, "Acute left subdural haematoma with 4 mm midline shift.", True),
    ("ACC002", True, "Small subarachnoid haemorrhage in the right sylvian fissure.", True),
    ("ACC003", True, "Intraparenchymal bleed, left basal ganglia.", True),
    ("ACC004", True, "No evidence of intracranial haemorrhage. Old lacunar infarcts.", False),
    ("ACC005", True, "Negative for hemorrhage; calcified pineal gland.", False),
    ("ACC006", False, "Subtle intraventricular haemorrhage in the occipital horns.", True),
    ("ACC007", False, "No acute intracranial abnormality.", False),
    ("ACC008", False, "CT head without haemorrhage or mass effect.", False),
    ("ACC009", False, "There is no haemorrhage, but a chronic infarct.", False),
    ("ACC010", False, "Unremarkable study.", False),
    ("ACC011", True, "CODED", True),
]


def _oru(accession: str, text: str, control: str, status: str = "F") -> str:
    segments = [
        f"MSH|^~\\&|RIS|HOSP|INFERNODE|HOSP|20261110101500||ORU^R01^ORU_R01|{control}|P|2.5.1",
        "PID|1||PAT123^^^HOSP^MR||Doe^Jane||19700101|F",
        f"OBR|1|ORD{accession}|{accession}|CTHEAD^CT head without contrast^L|||20261110090000"
        f"|||||||||||||||20261110101000|||{status}",
    ]
    if text == "CODED":
        segments.append("OBX|1|CWE|59776-5^Procedure findings^LN||1386000^Intracranial "
                        "hemorrhage^SCT||||||F")
    else:
        segments.append(f"OBX|1|TX|59776-5^Procedure findings^LN||{text}||||||F")
    return "\r".join(segments) + "\r"


@pytest.fixture
def engine(tmp_path: Path):
    engine = create_engine(f"sqlite:///{tmp_path / 'node.db'}")
    migrate(engine)
    yield engine
    engine.dispose()


def test_final_reports_over_mllp_give_the_agreement_figures(engine, tmp_path: Path) -> None:
    cfg = WorkersConfig()
    rng = np.random.default_rng(3)
    jobs = {}
    for i, (accession, positive, _text, _truth) in enumerate(CASES):
        scanner = BEFORE[i % 2]
        jobs[accession] = finish_job(engine, cfg, AT + timedelta(minutes=i), summary=(
            analysed_summary(scanner, rng, accession, positive, 0.9 if positive else 0.1)))
    rules = default_label_rules()
    listener = MllpListener("127.0.0.1", 0, lambda r: record_report(
        engine, r, {"ich": rules["ich"]}, AT + timedelta(hours=2)))
    port = listener.start()
    try:
        for i, (accession, _positive, text, _truth) in enumerate(CASES):
            ack = send_mllp(_oru(accession, text, f"C{i:04d}"), "127.0.0.1", port,
                            timeout_s=30)
            assert ack.code == "AA" and ack.control_id == f"C{i:04d}"
        # a preliminary report is acknowledged and not used
        ack = send_mllp(_oru("ACC007", "Large extradural haematoma.", "P0001", status="P"),
                        "127.0.0.1", port, timeout_s=30)
        assert ack.code == "AA"
        # not a report: rejected (table 0357 code 200, unsupported message type)
        adt = ("MSH|^~\\&|RIS|HOSP|INFERNODE|HOSP|20261110101500||ADT^A01|X0001|P|2.5.1\r"
               "PID|1||PAT123\r")
        with pytest.raises(PermanentDeliveryError, match="AR.*200"):
            send_mllp(adt, "127.0.0.1", port, timeout_s=30)
    finally:
        listener.stop()

    with engine.connect() as conn:
        stored = conn.execute(select(monitoring_labels.c.positive, monitoring_labels.c.rule,
                                     monitoring_labels.c.accession)).all()
    assert len(stored) == len(CASES)
    # nothing of the accession numbers is stored in clear
    assert not any(row.accession.startswith("ACC") for row in stored)
    assert sorted(bool(r.positive) for r in stored) == sorted(c[3] for c in CASES)

    (overall,) = agreement(engine, AT - timedelta(days=1), AT + timedelta(days=1),
                           by=("pipeline", "model_version"))
    expected = {"tp": 0, "fp": 0, "fn": 0, "tn": 0}
    for _acc, predicted, _text, truth in CASES:
        key = ("tp" if truth else "fp") if predicted else ("fn" if truth else "tn")
        expected[key] += 1
    assert (overall.tp, overall.fp, overall.fn, overall.tn) == (4, 2, 1, 4)
    assert expected == {"tp": 4, "fp": 2, "fn": 1, "tn": 4}
    assert overall.ppv == pytest.approx(4 / 6)
    assert overall.sensitivity == pytest.approx(4 / 5)
    assert overall.specificity == pytest.approx(4 / 6)
    for name, (k, n) in {"ppv": (4, 6), "sensitivity": (4, 5), "specificity": (4, 6)}.items():
        ci = binomtest(k, n).proportion_ci(method="wilson")
        assert overall.intervals()[name] == pytest.approx((ci.low, ci.high), abs=1e-6)

    by_scanner = agreement(engine, AT - timedelta(days=1), AT + timedelta(days=1))
    assert {(a.scanner, a.month) for a in by_scanner} == {
        ("Siemens SOMATOM Force", "2026-11"), ("GE Revolution", "2026-11")}
    assert sum(a.n for a in by_scanner) == len(CASES)


def test_reader_verdicts_count_where_no_report_decides(engine) -> None:
    cfg = WorkersConfig()
    rng = np.random.default_rng(5)
    positive = finish_job(engine, cfg, AT, summary=analysed_summary(
        BEFORE[0], rng, "R1", True, 0.8))
    negative = finish_job(engine, cfg, AT, summary=analysed_summary(
        BEFORE[0], rng, "R2", False, 0.2))
    record_feedback(engine, positive, False, "reader-a", AT)  # disagree: a false positive
    record_feedback(engine, negative, True, "reader-a", AT)  # agree: a true negative
    (group,) = agreement(engine, AT - timedelta(days=1), AT + timedelta(days=1),
                         by=("pipeline",))
    assert (group.tp, group.fp, group.fn, group.tn) == (0, 1, 0, 1)
    with pytest.raises(LookupError):
        record_feedback(engine, "no-such-job", True, "reader-a", AT)


def test_a_report_that_cannot_be_stored_is_answered_ae(tmp_path: Path) -> None:
    # a database without the monitoring tables: the insert fails for real
    bare = create_engine(f"sqlite:///{tmp_path / 'bare.db'}")
    listener = MllpListener("127.0.0.1", 0, lambda r: record_report(
        bare, r, {"ich": default_label_rules()["ich"]}, AT))
    port = listener.start()
    try:
        with pytest.raises(TransientDeliveryError, match="AE.*207"):
            send_mllp(_oru("ACC100", "No haemorrhage.", "E0001"), "127.0.0.1", port,
                      timeout_s=30)
    finally:
        listener.stop()
        bare.dispose()


def test_a_host_not_allowed_gets_no_answer(tmp_path: Path) -> None:
    received = []
    listener = MllpListener("127.0.0.1", 0, received.append, allowed_hosts=["192.0.2.7"])
    port = listener.start()
    try:
        with pytest.raises(TransientDeliveryError, match="closed the connection"):
            send_mllp(_oru("ACC200", "No haemorrhage.", "H0001"), "127.0.0.1", port,
                      timeout_s=30)
    finally:
        listener.stop()
    assert received == []
