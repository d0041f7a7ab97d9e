"""pynetdicom's DUL polling interval on the node's associations (`scp.guard.poll_interval`):
short with one association open, pynetdicom's 1 ms once many are (their polling would take the
CPU the stores need). pynetdicom is the requestor here, the node's own listener the acceptor,
on pynetdicom's upper layer (`dicom.upper_layer: pynetdicom`; the native layer does not poll)."""

from __future__ import annotations

from pynetdicom import AE
from pynetdicom.sop_class import Verification

from dicom_node.scp.guard import DUL_POLL_MAX_S, DUL_POLL_S
from tests.support.waiting import wait_until


def _acceptors(node):
    return [a for a in node.server._ae.active_associations if a.is_acceptor]


def test_polling_interval_follows_the_number_of_open_associations(node_factory):
    node = node_factory(upper_layer="pynetdicom")
    ae = AE(ae_title="INFERNODE_SCU")
    ae.add_requested_context(Verification)
    opened = []
    try:
        opened.append(ae.associate("127.0.0.1", node.server.port, ae_title="INFERNODE"))
        assert opened[0].is_established
        [one] = _acceptors(node)
        assert one.dul._run_loop_delay == DUL_POLL_S
        for _ in range(5):
            opened.append(ae.associate("127.0.0.1", node.server.port, ae_title="INFERNODE"))
            assert opened[-1].is_established
        wait_until(lambda: len(_acceptors(node)) == 6, 30, "six associations open")
        assert {a.dul._run_loop_delay for a in _acceptors(node)} == {DUL_POLL_MAX_S}
    finally:
        for assoc in opened:
            assoc.release()
    wait_until(lambda: not _acceptors(node), 30, "associations closed")
    again = ae.associate("127.0.0.1", node.server.port, ae_title="INFERNODE")
    try:
        assert [a.dul._run_loop_delay for a in _acceptors(node)] == [DUL_POLL_S]
    finally:
        again.release()
