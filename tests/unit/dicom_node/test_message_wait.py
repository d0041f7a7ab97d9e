"""The acceptor loop's look at its DIMSE message queue waits for a message instead of polling."""

from __future__ import annotations

import threading

from pynetdicom import AE
from pynetdicom.association import Association

from dicom_node.scp.guard import wait_for_messages


def _association() -> Association:
    return Association(AE(), mode="acceptor")


def test_a_non_blocking_look_takes_a_message_queued_while_it_waits():
    assoc = _association()
    wait_for_messages(assoc, wait_s=30.0)
    message = (1, object())
    timer = threading.Timer(0.05, assoc.dimse.msg_queue.put, args=(message,))
    timer.start()
    try:
        # pynetdicom's own non-blocking look would find the queue empty and return at once.
        assert assoc.dimse.get_msg(block=False) == message
    finally:
        timer.cancel()


def test_an_empty_queue_still_answers_nothing_after_the_wait():
    assoc = _association()
    wait_for_messages(assoc, wait_s=0.01)
    assert assoc.dimse.get_msg(block=False) == (None, None)


def test_a_blocking_look_keeps_pynetdicom_s_behaviour():
    assoc = _association()
    wait_for_messages(assoc, wait_s=0.01)
    message = (3, object())
    assoc.dimse.msg_queue.put(message)
    assert assoc.dimse.get_msg(block=True) == message
