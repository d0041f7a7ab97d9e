"""What the composition root adds to the packages' own sections: the facts a pipeline needs
about the node it runs in (index database, output folder, model folders, the site's reporting
settings)."""

from __future__ import annotations

from infernode.settings import Settings
from workers.config import WorkersConfig


def workers_config(settings: Settings) -> WorkersConfig:
    """The workers section with every pipeline told where the index, outputs and models are
    (values set explicitly in a pipeline's options win)."""
    node_facts = {
        "db_url": settings.database.url,
        "output_dir": str(settings.data_dir / "outputs"),
        "model_paths": [str(p) for p in settings.inference.model_paths],
        "reporting": settings.reporting.model_dump(),
    }
    pipelines = {
        name: spec.model_copy(update={"options": {**node_facts, **spec.options}})
        for name, spec in settings.workers.pipelines.items()
    }
    device = settings.inference.device if settings.inference.device in ("cpu", "cuda") else None
    update: dict[str, object] = {"pipelines": pipelines}
    if device and settings.workers.device == "auto":
        update["device"] = device
    return settings.workers.model_copy(update=update)
