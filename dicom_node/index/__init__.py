"""The instance index: studies, series, instances and ingest failures (tables owned here)."""
