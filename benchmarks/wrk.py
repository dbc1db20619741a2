"""Throughput with ``wrk``: requests/s, latency and errors of one URL under N connections.

``wrk`` (Debian's, ``/usr/bin/wrk``) is run as a child and its text output
parsed: the summary line (requests, duration, bytes), ``Requests/sec``, the
latency statistics and distribution (``--latency``), the socket errors and
the count of responses with a status of 400 or more (wrk's "Non-2xx or 3xx
responses"). The output itself is kept with the figures.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Any

_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_METRIC = {"": 1.0, "k": 1e3, "M": 1e6, "G": 1e9}


def installed() -> str | None:
    """wrk's path, or None when it is not installed."""
    return shutil.which("wrk")


def version(path: str) -> str:
    """``wrk -v``'s first line without the copyright (wrk then prints its usage, exits 1)."""
    done = subprocess.run([path, "-v"], capture_output=True, text=True, check=False)
    first = (done.stdout or done.stderr).strip().splitlines()[0]
    return re.sub(r"\s+Copyright.*", "", first)


def _ms(text: str) -> float:
    """A wrk duration (``812.00us``, ``3.04ms``, ``1.20s``) in ms."""
    found = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if not found:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(found[1]) * _UNITS_MS[found[2]]


def _count(text: str) -> float:
    """A wrk count (``4.55k``, ``590.23``) as a number."""
    found = re.fullmatch(r"([\d.]+)([kMG]?)", text)
    if not found:
        raise ValueError(f"not a wrk count: {text!r}")
    return float(found[1]) * _METRIC[found[2]]


def parse(output: str) -> dict[str, Any]:
    """wrk's figures from its output (``--latency``); raises ValueError if it has none."""
    rate = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    total = re.search(r"^\s*(\d+) requests in ([\d.]+\w+), ([\d.]+\w+) read", output, re.M)
    if not rate or not total:
        raise ValueError("no Requests/sec or request count in wrk's output")
    result: dict[str, Any] = {
        "requests_per_s": float(rate[1]),
        "requests": int(total[1]),
        "duration_s": _ms(total[2]) / 1000,
        "read": total[3],
    }
    latency = re.search(r"^\s*Latency\s+(\S+)\s+(\S+)\s+(\S+)\s+([\d.]+)%", output, re.M)
    if latency:
        result |= {"latency_avg_ms": _ms(latency[1]), "latency_stdev_ms": _ms(latency[2]),
                   "latency_max_ms": _ms(latency[3])}
    per_thread = re.search(r"^\s*Req/Sec\s+(\S+)\s+(\S+)\s+(\S+)", output, re.M)
    if per_thread:
        result["thread_requests_per_s_avg"] = _count(per_thread[1])
    for percent, value in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)$", output, re.M):
        result[f"latency_p{percent}_ms"] = _ms(value)
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                        output)
    result["socket_errors"] = (
        dict(zip(("connect", "read", "write", "timeout"), map(int, sockets.groups()),
                 strict=True))
        if sockets else {"connect": 0, "read": 0, "write": 0, "timeout": 0})
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    result["non_2xx"] = int(non_2xx[1]) if non_2xx else 0
    return result


def run(path: str, url: str, headers: dict[str, str], seconds: int, connections: int,
        threads: int = 1, warmup: int = 0) -> dict[str, Any]:
    """``wrk -t{threads} -c{connections} -d{seconds}s --latency`` on ``url``, parsed.

    A ``warmup`` run of that many seconds goes first, untimed and unrecorded
    (a fresh worker compiles its documents and opens its connections then).
    A run wrk could not make (no output to parse) is recorded with its error
    rather than raised, so one bad server does not lose the others' figures.
    """
    flags = [f"-t{threads}", f"-c{connections}"]
    for name, value in headers.items():
        flags += ["-H", f"{name}: {value}"]
    if warmup:
        subprocess.run([path, *flags, f"-d{warmup}s", url], capture_output=True,
                       timeout=warmup + 60, check=False)
    argv = [path, *flags, f"-d{seconds}s", "--latency", url]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60,
                          check=False)
    shown = [("Authorization: Bearer …" if arg.startswith("Authorization:") else arg)
             for arg in argv]
    recorded: dict[str, Any] = {"argv": ["wrk", *shown[1:]], "output": done.stdout.strip()}
    try:
        return {**parse(done.stdout), **recorded}
    except ValueError as why:
        return {**recorded, "error": f"{why} (exit {done.returncode}: {done.stderr.strip()})"}
