"""`infernode demo` ends with a result table that fits an 80-column terminal: no header or
value cut short (rich marks a cut with "…"), every accession number whole."""

from __future__ import annotations

from rich.console import Console

from dicom_node.synth import StudyIdentity
from infernode.demo import fill_results, results_table

OUTPUTS = ([{"kind": "dicom"}] * 3 + [{"kind": "dicom-gsps"}] + [{"kind": "dicom-overlay"}] * 3
           + [{"kind": "fhir-bundle"}, {"kind": "hl7-oru"}])


def _job(pipeline: str, summary: dict, flag: str | None = None, state: str = "succeeded"):
    return {"pipeline": pipeline, "state": state, "wait_s": 12.345, "run_s": 123.4,
            "result": {"summary": summary, "outputs": OUTPUTS, "priority_flag": flag}}


def test_demo_result_table_fits_80_columns():
    studies = [(StudyIdentity(accession_number=f"DEMOACC00{i}"), label) for i, label in
               enumerate(("subdural haemorrhage (CT head)", "no haemorrhage (CT head)",
                          "acute infarct (MR diffusion)", "wrist fracture (radiograph)",
                          "not sent"), start=1)]
    jobs = {
        studies[0][0].study_instance_uid: _job(
            "ich", {"positive": "any,subdural", "subdural_ml": 47.8},
            "critical: ICH suspected"),
        studies[1][0].study_instance_uid: _job("ich", {"positive": ""}),
        studies[2][0].study_instance_uid: _job(
            "stroke", {"positive": "infarct", "infarct_ml": 8.6},
            "critical: acute infarct suspected"),
        studies[3][0].study_instance_uid: _job(
            "fracture", {"not_analysed": "no usable radiograph"}, state="failed"),
    }
    deliveries = {uid: {"demo-pacs": {"delivered": 7, "dead": 1}, "facade": {"delivered": 1}}
                  for uid in jobs}
    table = results_table()
    assert not fill_results(table, studies, jobs, deliveries)  # one failed, one not routed
    console = Console(width=80, record=True, color_system=None)
    console.print(table)
    text = console.export_text()
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= 80
    for header in ("study", "pipeline", "AI result", "outputs", "wait/run"):
        assert header in text
    for identity, _ in studies:
        assert identity.accession_number in text
    assert "critical:" in text and "47.8 mL" in text and "not complete" in text
    assert "123.40" in text and "demo-pacs: 1" in text


def test_an_indeterminate_result_is_never_shown_as_negative():
    from infernode.console.views import result_label

    identity = StudyIdentity(accession_number="DEMOACC009")
    summary = {"positive": "", "indeterminate": "too few slices for the model (12 < 20)"}
    jobs = {identity.study_instance_uid: _job("ich", summary)}
    table = results_table()
    fill_results(table, [(identity, "partial head CT")], jobs, {})
    console = Console(width=80, record=True, color_system=None)
    console.print(table)
    text = " ".join(console.export_text().split())
    assert "indeterminate," in text and "read as usual" in text
    assert "no ICH detected" not in text and "negative" not in text

    kind, label = result_label({"summary": summary}, "indeterminate")
    assert kind == "indeterminate" and "too few slices" in label
    assert result_label({"summary": {"positive": ""}}, "negative")[0] == "negative"
