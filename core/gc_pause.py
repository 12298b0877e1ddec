"""Hold off the cyclic garbage collector while a worker thread builds many objects.

A full (generation 2) collection walks every live object while holding the GIL: with a few
hundred thousand payments and ledger rows alive, one pass takes 0.5-1 s, and the event loop,
though the work is in another thread, waits for it (`python -m bench --only reports` saw
1.1 s). The rows are acyclic and freed by reference counting, so nothing piles up meanwhile;
the collector runs again as usual when the last holder leaves.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_holders = 0
_was_enabled = False


@contextmanager
def no_collection() -> Iterator[None]:
    """No cyclic collection inside (nestable, from any number of threads at once)."""
    global _holders, _was_enabled
    with _lock:
        if _holders == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _holders += 1
    try:
        yield
    finally:
        with _lock:
            _holders -= 1
            if _holders == 0 and _was_enabled:
                gc.enable()
