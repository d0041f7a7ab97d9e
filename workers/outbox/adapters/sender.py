"""DICOM outputs back to the AE that sent the study (C-STORE, PS3.4 B.2): the sender's AE title
is read from the instance index, its address from the destination's `senders` table."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Engine

from dicom_node.index.store import IndexStore
from workers.outbox.adapters.base import Sent
from workers.outbox.adapters.dicom import CStoreAdapter
from workers.outbox.claims import DueDelivery, Failure
from workers.outbox.config import DicomDestination, SenderDestination


class ReturnToSenderAdapter:
    """One C-STORE adapter per sending AE, built on first use."""

    def __init__(self, dest: SenderDestination, engine: Engine) -> None:
        self._dest = dest
        self._index = IndexStore(engine)
        self._adapters: dict[str, CStoreAdapter] = {}

    def _adapter(self, ae_title: str) -> CStoreAdapter | None:
        address = self._dest.senders.get(ae_title)
        if address is None:
            return None
        adapter = self._adapters.get(ae_title)
        if adapter is None:
            adapter = CStoreAdapter(DicomDestination(
                name=self._dest.name, host=address.host, port=address.port,
                called_ae=ae_title, calling_ae=self._dest.calling_ae,
                connect_timeout_s=self._dest.connect_timeout_s, timeout_s=self._dest.timeout_s))
            self._adapters[ae_title] = adapter
        return adapter

    def send(self, items: Sequence[DueDelivery]) -> list[Sent]:
        by_study: dict[str, list[DueDelivery]] = {}
        for item in items:
            by_study.setdefault(item.output.study_instance_uid, []).append(item)
        results: list[Sent] = []
        for study, group in by_study.items():
            senders = self._index.study_senders(study)
            adapter = self._adapter(senders[0]) if senders else None
            if adapter is None:
                why = (f"sender AE {senders[0]!r} has no return address in 'senders'"
                       if senders else "the study's sender is not in the instance index")
                results += [Sent(i.id, Failure(True, "no_return_address", why)) for i in group]
                continue
            results += adapter.send(group)
        return results

    def close(self) -> None:
        for adapter in self._adapters.values():
            adapter.close()
        self._adapters.clear()
