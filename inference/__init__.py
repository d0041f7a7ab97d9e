"""Models and pipelines: registry and model cards, loaders, pre/post-processing,
explainability, evaluation, phantoms and training. No DICOM, no queue.

Public entry points: :class:`inference.registry.ModelRegistry` (``get(id).predict(volume)``),
:class:`inference.types.Volume` (input) and :class:`inference.types.Prediction` (output).
Submodules are imported on demand; importing this package creates nothing.
"""
