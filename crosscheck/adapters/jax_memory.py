"""When a long run must drop its compiled programs: the memory-map budget.

Each compiled program holds memory mappings for its code, and the kernel allows a process
65530 of them (`vm.max_map_count`); past that, LLVM fails with "Cannot allocate memory" and the
process aborts. A default run (96 cases, four dtypes, two shape buckets) compiles about 6,000
programs: 192 float64/float32 case runs left 28,000 mappings. So once the mappings pass
MAP_BUDGET, every program is dropped; the persistent cache reloads any still needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

MAP_BUDGET = 20000
# Counting the mappings costs time in proportion to them (the kernel writes out every one), and
# a case run adds a few hundred: counted every COUNT_EVERY case runs, the count stays far below
# the kernel's limit between counts. Where /proc cannot count, every BLIND_EVERY case runs
# release all the same. (docs/bench.md, "Measurements moved here from code comments".)
COUNT_EVERY = 8
BLIND_EVERY = 64


def mapped_regions() -> int | None:
    """This process's memory mappings (Linux), or None where /proc does not say."""
    try:
        with open("/proc/self/maps", "rb") as f:
            return f.read().count(b"\n")
    except OSError:
        return None


@dataclass
class MapBudget:
    """Counts case runs, and the mappings every COUNT_EVERY of them (`count`: every run where
    it cannot tell); `spent()` after each case run says whether to drop every program now."""

    count: Callable[[], int | None] = mapped_regions
    case_runs: int = 0
    mapped: int | None = 0  # the last count (None: unknown)

    def spent(self) -> bool:
        self.case_runs += 1
        if self.mapped is not None and self.case_runs % COUNT_EVERY != 1:
            return False
        self.mapped = self.count()
        crowded = self.mapped > MAP_BUDGET if self.mapped is not None else self.case_runs % BLIND_EVERY == 0
        if crowded:
            self.mapped = self.mapped and 0
        return crowded
