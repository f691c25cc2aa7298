"""How much memory this machine has available now, for preflight's estimate of a whole-file runtime's peak.

Linux: `MemAvailable` from /proc/meminfo (what the kernel can hand out without swapping: free memory plus
reclaimable caches). Elsewhere: free physical pages from os.sysconf where the platform has them. None
when neither answers: preflight then says nothing about memory rather than guessing. No psutil on the host.
"""

from __future__ import annotations

import os
from typing import Optional

MEMINFO = "/proc/meminfo"


def available_mib() -> Optional[float]:
    try:
        with open(MEMINFO, encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (ValueError, OSError, AttributeError):  # the platform does not know the name
        return None
