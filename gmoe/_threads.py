"""One BLAS thread for the duration of a fit or a sweep task.

The products inside EM are thin: on a small or busy machine threaded BLAS is slower,
and one thread per task keeps the numbers independent of the number of workers.
``threadpoolctl.threadpool_limits`` rescans the process's loaded libraries on every
call (about 4 ms, more than a small fit); the controller here scans once, when first
used (numpy's and scipy's BLAS are loaded by then: ``gmoe`` imports both).
"""

from __future__ import annotations

from functools import cache

from threadpoolctl import ThreadpoolController

__all__ = ["one_thread"]


@cache
def _controller() -> ThreadpoolController:
    return ThreadpoolController()


def one_thread(user_api: str | None = None):
    """Context manager limiting the thread pools (``user_api`` "blas", "openmp" or
    None for both) to one thread, restoring them on exit."""
    return _controller().limit(limits=1, user_api=user_api)
