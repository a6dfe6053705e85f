"""Benchmark: a folder import through ``dicomgate import`` (the import_files job), in instances/s.

Usage: .venv/bin/python bench/bench_import.py [--count N] [--size 64|512] [--runs K]

Generates N CT-like instances (bench_store's generator), then per run, on a fresh data
folder: (1) reads every file's header with pydicom (``stop_before_pixels``), the reference;
(2) runs the import_files job inline, as ``dicomgate import`` does (scan, expected items,
receive, per-item record, reconciliation), its batches read, parsed and stored by the
import processes (one per core; started before timing, as a running service has them after
its first large import); (3) the bare ``receive()`` loop that
``dicomgate import`` used before it was a job, to show what the job bookkeeping costs.
Files are read once before timing so every case finds them in the page cache. Prints the
medians, the ratios import/header-read (target >= 0.5) and import/bare-receive, and the CPU
time per instance of the header read and of the job (its reader processes included).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import pydicom

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from bench_store import generate  # noqa: E402
from dicomgate.app import open_intake, open_jobs  # noqa: E402
from dicomgate.intake.origin import Origin, OriginKind  # noqa: E402
from dicomgate.intake.receive import receive  # noqa: E402
from dicomgate.settings import load_settings  # noqa: E402
from dicomgate.sources import import_processes  # noqa: E402


def cpu_seconds() -> float:
    """Return the CPU time of this process and of its children (the import processes).

    The pool's processes live on, so their time is read from ``/proc`` (Linux), not from
    ``RUSAGE_CHILDREN`` (reaped children only).
    """
    own = resource.getrusage(resource.RUSAGE_SELF)
    return own.ru_utime + own.ru_stime + _live_children_cpu()


def _live_children_cpu() -> float:
    ticks, me = os.sysconf("SC_CLK_TCK"), str(os.getpid())
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        if fields[1] == me:  # ppid; then utime and stime are fields 14 and 15 of stat
            total += int(fields[11]) + int(fields[12])
    return total / ticks


def header_read(files: list[Path]) -> tuple[float, float]:
    t0, c0 = time.perf_counter(), cpu_seconds()
    for path in files:
        pydicom.dcmread(path, stop_before_pixels=True)
    return len(files) / (time.perf_counter() - t0), (cpu_seconds() - c0) / len(files)


def job_import(corpus: Path, data: Path, count: int, processes: int) -> tuple[float, float]:
    settings = load_settings(None, data_dir=data, log_level="WARNING")
    settings.sources.import_processes = processes
    jobs = open_jobs(settings, open_intake(settings), queue=False)
    t0, c0 = time.perf_counter(), cpu_seconds()
    job_id = jobs.submit("import_files", {"paths": [str(corpus)]})
    job = jobs.run_inline(job_id)
    elapsed, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    assert job.counts == {"stored": count}, job.counts
    jobs.db.dispose()
    return count / elapsed, cpu / count


def bare_receive(files: list[Path], data: Path) -> float:
    settings = load_settings(None, data_dir=data, log_level="WARNING")
    intake = open_intake(settings)
    t0 = time.perf_counter()
    for path in files:
        result = receive(
            intake, path.read_bytes(), Origin(OriginKind.IMPORT, import_path=str(path))
        )
        assert result.ok
    elapsed = time.perf_counter() - t0
    intake.db.dispose()
    return len(files) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--size", type=int, choices=(64, 512), default=64)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--processes", type=int, default=0, help="import processes (0: per core)")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="dicomgate-bench-import-"))
    try:
        corpus = base / "corpus"
        generate(corpus, args.count, args.size)
        files = sorted(corpus.rglob("*.dcm"))
        for path in files:
            path.read_bytes()  # warm the page cache for every case alike
        import_processes.configure(args.processes, 1)
        import_processes.start(wait=True)
        rates: dict[str, list[float]] = {"header": [], "job": [], "bare": []}
        cpu: dict[str, list[float]] = {"header": [], "job": []}
        for run in range(args.runs):
            for name, measure in (
                ("header", partial(header_read, files)),
                (
                    "job",
                    partial(job_import, corpus, base / f"job{run}", args.count, args.processes),
                ),
            ):
                rate, per_instance = measure()
                rates[name].append(rate)
                cpu[name].append(per_instance * 1000)
            rates["bare"].append(bare_receive(files, base / f"bare{run}"))
            print(f"run {run + 1}: " + ", ".join(f"{k} {v[-1]:.0f}/s" for k, v in rates.items()))
        med = {k: statistics.median(v) for k, v in rates.items()}
        cpu_med = {k: statistics.median(v) for k, v in cpu.items()}
        print(f"{args.count} instances ({args.size}x{args.size}), median of {args.runs} runs:")
        print(f"  pydicom header read      {med['header']:8.0f} instances/s (reference)")
        processes = import_processes.process_count()
        print(f"  dicomgate import (job)   {med['job']:8.0f} instances/s ({processes} processes)")
        print(f"  bare receive() loop      {med['bare']:8.0f} instances/s")
        print(f"  CPU per instance: header {cpu_med['header']:.3f} ms, job {cpu_med['job']:.3f} ms")
        print(f"  ratio import/header-read {med['job'] / med['header']:.3f} (target >= 0.5)")
        print(f"  ratio import/bare        {med['job'] / med['bare']:.3f}")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
