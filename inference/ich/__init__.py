"""The intracranial haemorrhage (ICH) pipeline: any ICH and five subtypes per slice and study."""

from .labels import ICH_CLASSES, ICH_SUBTYPES

__all__ = ["ICH_CLASSES", "ICH_SUBTYPES"]
