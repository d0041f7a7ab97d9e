"""Models and pipelines: registry and model cards, loaders, pre/post-processing,
explainability, evaluation, phantoms and training. No DICOM, no queue."""
