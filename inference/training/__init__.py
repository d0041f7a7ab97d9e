"""Training of the demo models on phantoms (CPU, minutes)."""
