"""ICH output classes, in model output order, with their codes.

Keys match the RSNA Intracranial Hemorrhage Detection label names so that labelled sets in that
layout map onto them without a table.
"""

from __future__ import annotations

from ..codes import code_for
from ..types import Code

ICH_SUBTYPES: tuple[str, ...] = (
    "epidural",
    "subdural",
    "subarachnoid",
    "intraparenchymal",
    "intraventricular",
)
ICH_CLASSES: tuple[str, ...] = ("any", *ICH_SUBTYPES)

ICH_NAMES: dict[str, str] = {
    "any": "Intracranial haemorrhage",
    "epidural": "Epidural haemorrhage",
    "subdural": "Subdural haemorrhage",
    "subarachnoid": "Subarachnoid haemorrhage",
    "intraparenchymal": "Intraparenchymal haemorrhage",
    "intraventricular": "Intraventricular haemorrhage",
}

_CONCEPTS: dict[str, str] = {
    "any": "intracranial_hemorrhage",
    "epidural": "epidural_hemorrhage",
    "subdural": "subdural_hemorrhage",
    "subarachnoid": "subarachnoid_hemorrhage",
    "intraparenchymal": "intraparenchymal_hemorrhage",
    "intraventricular": "intraventricular_hemorrhage",
}


def ich_code(key: str) -> Code:
    """SNOMED CT code of ICH class ``key`` (from :data:`inference.codes.CODE_TABLE`)."""
    return code_for(_CONCEPTS[key])
