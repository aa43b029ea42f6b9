"""How the brain's process asks glibc's malloc to hand memory back, so that its resident memory stays flat.

The brain keeps and drops many mid-sized tensors of every size (a conversation's cached keys and values, a
prefill's activations) from several threads. With glibc's defaults the threshold above which a block is mapped
on its own (and returned to the system when freed) rises to the largest block freed so far, so those tensors
soon land in the arenas, whose holes are reused only by blocks that fit: in a 10-minute soak with a 64 MiB
prefix cache the resident memory grew by about 1 MiB a second and never levelled off. A fixed threshold (which
also stops the rise) and two arenas keep it flat once the caches are full (bench/soak.py).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys

log = logging.getLogger("brain.allocator")

# mallopt parameters, from glibc's malloc.h
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
MMAP_THRESHOLD_BYTES = 64 * 1024
ARENAS = 2


def tune_allocator() -> bool:
    """Set the thresholds above on glibc (whether they were set); elsewhere, or where an operator chose their own
    (MALLOC_* variables, another allocator preloaded), nothing is changed."""
    if not sys.platform.startswith("linux"):
        return False
    if any(name.startswith("MALLOC_") for name in os.environ) or "LD_PRELOAD" in os.environ:
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    libc = ctypes.CDLL(name)
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None or not hasattr(libc, "gnu_get_libc_version"):  # musl has no mallopt tunables
        return False
    done = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(mallopt(M_ARENA_MAX, ARENAS))
    if not done:
        log.warning("glibc refused the allocator thresholds; resident memory may grow under churn")
    return done
