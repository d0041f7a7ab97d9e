"""Pipelines and the per-process cache that keeps their models warm.

A pipeline is built once per worker process (not per study) from its configured factory and
reused for every job of that process. The cache remembers the process id that filled it, so a
forked child (Celery prefork) builds its own copy instead of sharing a parent's CUDA context.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import threading
from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

from workers.config import PipelineSpec
from workers.errors import PermanentError, UnknownPipeline
from workers.messages import JobContext, PipelineResult


@runtime_checkable
class Pipeline(Protocol):
    """What a worker runs. `run` raises TransientError to be retried, PermanentError to fail."""

    name: str
    model_version: str

    def run(self, context: JobContext) -> PipelineResult: ...


@runtime_checkable
class Reporting(Protocol):
    """A pipeline that can answer a study it failed on with a "not analysed: reason" report
    (`code` is the short reason code, `reason` the sentence shown to the reader)."""

    def not_analysed(self, context: JobContext, reason: str, code: str) -> PipelineResult: ...


PipelineFactory = Callable[[str, dict[str, Any]], Pipeline]


def select_device(preference: str) -> str:
    """`cuda` when asked for or when `auto` finds a CUDA device, else `cpu`. torch is imported
    only here, and only for `auto`/`cuda`, so CPU-only tools start quickly."""
    if preference == "cpu":
        return "cpu"
    if importlib.util.find_spec("torch") is None:
        if preference == "cuda":
            raise PermanentError("device 'cuda' requested but torch is not installed")
        return "cpu"
    import torch

    available = bool(torch.cuda.is_available())
    if preference == "cuda" and not available:
        raise PermanentError("device 'cuda' requested but no CUDA device is visible")
    return "cuda" if available else "cpu"


def load_factory(path: str) -> PipelineFactory:
    """Import `module:callable`. Raises PermanentError when it does not exist."""
    module_name, _, attribute = path.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise PermanentError(f"pipeline factory {path!r} cannot be imported: {exc}") from exc
    if not callable(factory):
        raise PermanentError(f"pipeline factory {path!r} is not callable")
    return factory


class PipelineRegistry:
    """Builds each configured pipeline on first use in this process and keeps it."""

    def __init__(self, specs: Mapping[str, PipelineSpec], device_preference: str = "auto") -> None:
        self._specs = dict(specs)
        self._preference = device_preference
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._cache: dict[str, Pipeline] = {}
        self._stand_ins: dict[str, Reporting | None] = {}
        self._device: str | None = None

    @property
    def names(self) -> list[str]:
        return list(self._specs)

    def model_version(self, name: str) -> str:
        return self.spec(name).model_version

    def spec(self, name: str) -> PipelineSpec:
        try:
            return self._specs[name]
        except KeyError:
            raise UnknownPipeline(f"no pipeline named {name!r} is configured") from None

    @property
    def device(self) -> str:
        with self._lock:
            return self._device_locked()

    def _forget_if_forked(self) -> None:
        """In a forked child (Celery prefork) build everything anew: no CUDA context, engine
        or model is shared with the parent. Call with the lock held."""
        if self._pid != os.getpid():
            self._cache.clear()
            self._stand_ins.clear()
            self._device = None
            self._pid = os.getpid()

    def _device_locked(self) -> str:
        if self._device is None:
            self._device = select_device(self._preference)
        return self._device

    def get(self, name: str) -> Pipeline:
        """The warm pipeline `name`, built now if this process has not built it yet."""
        spec = self.spec(name)
        with self._lock:
            self._forget_if_forked()
            pipeline = self._cache.get(name)
            if pipeline is None:
                pipeline = load_factory(spec.factory)(self._device_locked(), self.options(name))
                if pipeline.model_version != spec.model_version:
                    raise PermanentError(
                        f"pipeline {name!r} reports model version {pipeline.model_version!r} "
                        f"but the configuration says {spec.model_version!r}")
                self._cache[name] = pipeline
            return pipeline

    def options(self, name: str) -> dict[str, Any]:
        """What the factory of pipeline `name` receives: its name and model version (a real
        model checks them against its card) and the configured options."""
        spec = self.spec(name)
        return {"name": name, "model_version": spec.model_version, **spec.factory_options()}

    def stand_in(self, name: str) -> Reporting | None:
        """A reporter for pipeline `name` whose own pipeline could not be built (its model
        failed to load): built once per process and kept, like the pipelines, so that every
        study sent to a broken pipeline reuses one index connection pool. None when the
        pipeline has no report family (`workers.pipelines.unavailable.fallback_reporter`)."""
        from workers.pipelines.unavailable import fallback_reporter  # encoders: only when needed

        options = self.options(name)
        with self._lock:
            self._forget_if_forked()
            if name not in self._stand_ins:
                self._stand_ins[name] = fallback_reporter(options, self._device_locked())
            return self._stand_ins[name]
