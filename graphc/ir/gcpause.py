"""CPython's cyclic garbage collector, paused while a large graph is built or compiled.

Building a gradient or compiling a function allocates a few objects per node, nearly all of
them long-lived (nodes, names, plan entries), and creates no cyclic garbage worth finding midway.
The generational collector still runs every 700 allocations and rescans the survivors each
time the oldest generation grows by a quarter: about a third of the compile time of a
10^5-node graph (measured in docs/performance.md). `collector_paused` turns it off for the
duration of such a call and restores it afterwards. It nests and is safe across threads: the
first call in restores what it found when the last call out leaves, so a collector the user
disabled stays disabled. The scratch graphs these calls throw away are freed by reference
counting (`Graph.discard`), not left for the collector.
"""

from __future__ import annotations

import contextlib
import gc
import threading

_lock = threading.Lock()
_depth = 0
_was_enabled = False


@contextlib.contextmanager
def collector_paused():
    """Pause cyclic garbage collection inside the block (nesting, thread-safe).

    Examples:
        >>> import gc
        >>> with collector_paused():
        ...     inside = gc.isenabled()
        >>> inside, gc.isenabled()
        (False, True)
    """
    global _depth, _was_enabled
    with _lock:
        if _depth == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _was_enabled:
                gc.enable()
