"""Messages, output UIDs, and the per-process pipeline cache."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from workers import samples
from workers.config import CustomSpec, NoopSpec
from workers.errors import PermanentError, TransientError, UnknownPipeline
from workers.messages import JobContext, Priority, queue_name
from workers.registry import PipelineRegistry, select_device


def _context(pipeline: str = "noop", version: str = "v1", study: str = "1.2.3") -> JobContext:
    return JobContext(job_id="j", attempt=1, study_instance_uid=study, pipeline=pipeline,
                      model_version=version, series=(samples.series(),))


def test_output_uids_are_deterministic_per_job_key_and_valid() -> None:
    uid = _context().output_uid("1.2.826.0.1.3680043.10.1563.1", "seg")
    assert uid == _context().output_uid("1.2.826.0.1.3680043.10.1563.1.", "seg")
    assert uid != _context(version="v2").output_uid("1.2.826.0.1.3680043.10.1563.1", "seg")
    assert uid != _context().output_uid("1.2.826.0.1.3680043.10.1563.1", "sr")
    assert len(uid) <= 64 and re.fullmatch(r"(0|[1-9]\d*)(\.(0|[1-9]\d*))*", uid)


def test_queue_names() -> None:
    assert queue_name("ich", Priority.STAT) == "ich.stat"
    assert queue_name("ich", "routine") == "ich"


def test_registry_builds_each_pipeline_once_per_process(tmp_path: Path) -> None:
    record = tmp_path / "rec"
    registry = PipelineRegistry({
        "noop": NoopSpec(model_version="v1", record_dir=str(record)),
        "bad": CustomSpec(factory="workers.noop:NoSuchThing", model_version="1"),
    }, "cpu")
    first = registry.get("noop")
    assert registry.get("noop") is first
    assert registry.device == "cpu"
    result = first.run(_context())
    assert result.outputs[0].uid == _context().output_uid("2.25", "noop")
    assert (record / "loads.log").read_text().split() == [str(os.getpid())]
    with pytest.raises(UnknownPipeline):
        registry.get("missing")
    with pytest.raises(PermanentError, match="cannot be imported"):
        registry.get("bad")


def test_noop_failure_modes(tmp_path: Path) -> None:
    flag = tmp_path / "broken"
    flag.touch()
    registry = PipelineRegistry({
        "flaky": NoopSpec(fail_flag=str(flag)),
        "broken": NoopSpec(fail="permanent"),
    }, "cpu")
    with pytest.raises(TransientError):
        registry.get("flaky").run(_context("flaky"))
    flag.unlink()
    assert registry.get("flaky").run(_context("flaky")).outputs
    with pytest.raises(PermanentError):
        registry.get("broken").run(_context("broken"))


def test_device_selection_without_a_gpu() -> None:
    assert select_device("cpu") == "cpu"
    import torch

    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert select_device("auto") == expected
    if not torch.cuda.is_available():
        with pytest.raises(PermanentError, match="no CUDA device"):
            select_device("cuda")


def test_a_stand_in_reporter_is_built_once_per_pipeline(tmp_path: Path) -> None:
    """A pipeline whose model cannot load is answered by a stand-in reporter: one per pipeline
    and process, not one (with its own index engine) per failed study."""
    node = {"db_url": f"sqlite:///{tmp_path / 'node.db'}", "output_dir": str(tmp_path / "out")}
    registry = PipelineRegistry({
        "stroke": CustomSpec(factory="workers.noop:NoSuchThing", model_version="1",
                             options=node),
        "other": CustomSpec(factory="workers.noop:NoSuchThing", model_version="1",
                            options=node),
    }, "cpu")
    first = registry.stand_in("stroke")
    assert first is not None and registry.stand_in("stroke") is first
    assert first.reporter.spec.kind.value == "stroke"  # type: ignore[attr-defined]
    # a pipeline with no report family gets none, and that answer is kept too
    assert registry.stand_in("other") is None and registry.stand_in("other") is None
