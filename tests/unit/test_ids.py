"""Message ids (`new_id`) stay unique whatever seeds the shared `random` module (hypothesis does,
per example: ids drawn from it repeated, and JetStream dropped the repeated audit batches as
duplicates), and a forked child does not repeat its parent's."""

from __future__ import annotations

import os
import random

import pytest

from libs.common.contracts.messages import new_id

pytestmark = pytest.mark.unit


def test_ids_do_not_repeat_when_the_random_module_is_reseeded() -> None:
    ids = set()
    for _ in range(100):
        random.seed(0)
        ids.add(new_id())
    assert len(ids) == 100
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


def test_a_forked_child_draws_ids_of_its_own() -> None:
    parent = new_id()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report one id and leave without running the parent's cleanup
        os.write(write, new_id().encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    assert len(child) == 32 and child[:16] != parent[:16]
