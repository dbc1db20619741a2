"""Run one command and write its wall time and its own peak RSS as JSON.

    python benchmarks/peak_rss.py OUT.json COMMAND [ARG ...]

Why a separate small process: on Linux a child's ``ru_maxrss`` (from
``wait4``) also counts the address space it was forked or vforked from, up to
``exec``. Spawned straight from ``bench.py``, ``meterql load`` would be
charged with the benchmark's own memory, which grows from size to size. This
launcher is a bare interpreter, smaller than any ``meterql load``, so the peak
it reports is the command's.
"""

from __future__ import annotations

import json
import os
import sys
import time


def main() -> int:
    out, argv = sys.argv[1], sys.argv[2:]
    started = time.perf_counter()
    pid = os.posix_spawn(argv[0], argv, os.environ)
    _, status, usage = os.wait4(pid, 0)
    elapsed = time.perf_counter() - started
    result = {"seconds": elapsed, "peak_rss_kib": usage.ru_maxrss,
              "exit_code": os.waitstatus_to_exitcode(status)}
    with open(out, "w", encoding="utf-8") as handle:
        json.dump(result, handle)
    return 0


if __name__ == "__main__":
    sys.exit(main())
