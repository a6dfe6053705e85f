"""Benchmark: C-MOVE and C-GET out of the archive, dicomgate versus Orthanc, same data, one run.

Usage: .venv/bin/python bench/bench_retrieve.py [--count N] [--size small|large] [--runs K]

Generates one study of N CT-like instances (explicit VR little endian; "small" 64x64 8-bit,
"large" 512x512 16-bit), starts dicomgate and Orthanc on fresh data folders and stores the
study into both with ``storescu``, and waits until dicomgate prepared the study's metadata
(background work after a load, see ``bench_store.wait_prepared``). Then, alternating the two
systems, it retrieves the whole study with dcmtk: ``movescu`` to a dcmtk ``storescp
--ignore`` (a sink that reads and acknowledges without writing, so the destination's disk
does not weigh in) and ``getscu --ignore``. Prints instances/s, MB/s and the
dicomgate/Orthanc ratio of the medians.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from pydicom.uid import generate_uid

from bench_store import (
    ORTHANC,
    PYTHON,
    Server,
    folder_bytes,
    free_port,
    make_instance,
    stop,
    storescu_cmd,
    wait_http,
    wait_prepared,
)

SINK_AE = "SINK"
ENV = {**os.environ, "TCP_NODELAY": "1"}


def generate_study(folder: Path, count: int, size: int) -> str:
    """Write one study of ``count`` instances (4 series) into ``folder``; return its UID."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(size)
    dtype, top = (np.uint16, 4096) if size == 512 else (np.uint8, 256)
    pixels = [rng.integers(0, top, (size, size), dtype=dtype).tobytes() for _ in range(8)]
    study = generate_uid()
    series = [generate_uid() for _ in range(4)]
    for i in range(count):
        ds = make_instance(i, study, series[i % len(series)], size, pixels[i % len(pixels)])
        ds.save_as(folder / f"i{i:06d}.dcm", enforce_file_format=True)
    return study


def start_dicomgate(base: Path, sink_port: int) -> Server:
    work = Path(tempfile.mkdtemp(prefix="dg-", dir=base))
    http, dicom = free_port(), free_port()
    config = {
        "data_dir": str(work / "data"),
        "http_port": http,
        "dicom_port": dicom,
        "log_level": "WARNING",
        "stable_after": 3600,
        "query_retrieve": {
            "destinations": [{"ae_title": SINK_AE, "host": "127.0.0.1", "port": sink_port}]
        },
    }
    path = work / "config.yaml"
    path.write_text(json.dumps(config), encoding="utf-8")  # JSON is YAML
    cmd = [str(PYTHON), "-m", "dicomgate", "serve", "--config", str(path)]
    log = (work / "server.log").open("wb")
    proc = subprocess.Popen(cmd, cwd=work, stdout=log, stderr=subprocess.STDOUT)
    wait_http(f"http://127.0.0.1:{http}/api/health", proc)
    return Server("dicomgate", "DICOMGATE", dicom, proc, work)


def start_orthanc(base: Path, sink_port: int) -> Server:
    work = Path(tempfile.mkdtemp(prefix="orthanc-", dir=base))
    http, dicom = free_port(), free_port()
    config = {
        "Name": "bench",
        "StorageDirectory": str(work / "storage"),
        "IndexDirectory": str(work / "index"),
        "DicomAet": "ORTHANC",
        "DicomPort": dicom,
        "HttpPort": http,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomCheckCalledAet": False,
        "DicomAlwaysAllowStore": True,
        "DicomAlwaysAllowFind": True,
        "DicomAlwaysAllowGet": True,
        "DicomAlwaysAllowMove": True,
        "DicomModalities": {"sink": [SINK_AE, "127.0.0.1", sink_port]},
        "Plugins": [],
    }
    path = work / "orthanc.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    log = (work / "server.log").open("wb")
    # TCP_NODELAY=1 reaches the DCMTK inside Orthanc too: without it Orthanc's C-STORE
    # sub-operations wait on delayed ACKs (about 45 ms each), which would flatter dicomgate.
    proc = subprocess.Popen(
        [ORTHANC, str(path)], cwd=work, env=ENV, stdout=log, stderr=subprocess.STDOUT
    )
    wait_http(f"http://127.0.0.1:{http}/system", proc)
    return Server("orthanc", "ORTHANC", dicom, proc, work)


def start_sink(port: int) -> subprocess.Popen[bytes]:
    """Start ``storescp --ignore`` as the C-MOVE destination."""
    cmd = ["storescp", "-aet", SINK_AE, "--ignore", str(port)]
    proc = subprocess.Popen(cmd, env=ENV, stderr=subprocess.PIPE)
    time.sleep(0.5)
    if proc.poll() is not None:
        raise RuntimeError("storescp did not start")
    return proc


def _check(done: subprocess.CompletedProcess[bytes], what: str, expected: str) -> None:
    output = (done.stdout + done.stderr).decode(errors="replace")
    if done.returncode != 0 or expected not in output:
        raise RuntimeError(f"{what} failed:\n{output[-3000:]}")


def move(server: Server, study: str, count: int) -> float:
    """Run one C-MOVE of the study to the sink; return wall seconds."""
    cmd = ["movescu", "-v", "-S", "-aec", server.aet, "-aem", SINK_AE]
    cmd += ["-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}"]
    start = time.perf_counter()
    done = subprocess.run([*cmd, "127.0.0.1", str(server.dicom_port)], env=ENV, capture_output=True)
    elapsed = time.perf_counter() - start
    _check(done, f"movescu <- {server.name}", "Received Final Move Response (Success)")
    return elapsed


def get(server: Server, study: str, count: int) -> float:
    """Run one C-GET of the study into getscu (discarding); return wall seconds."""
    cmd = ["getscu", "-v", "-S", "--ignore", "-aec", server.aet]
    cmd += ["-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}"]
    start = time.perf_counter()
    done = subprocess.run([*cmd, "127.0.0.1", str(server.dicom_port)], env=ENV, capture_output=True)
    elapsed = time.perf_counter() - start
    _check(done, f"getscu <- {server.name}", f"Number of Completed Suboperations : {count}")
    return elapsed


def load(server: Server, folder: Path) -> None:
    """Store the study into ``server`` (not timed)."""
    done = subprocess.run(storescu_cmd(server, folder), env=ENV, capture_output=True)
    if done.returncode != 0 or b"E:" in done.stderr:
        raise RuntimeError(f"loading {server.name} failed: {done.stderr.decode()[-2000:]}")


def measure(
    servers: list[Server], runs: int, study: str, count: int
) -> dict[str, dict[str, float]]:
    operations: dict[str, Callable[[Server, str, int], float]] = {"C-MOVE": move, "C-GET": get}
    medians: dict[str, dict[str, float]] = {}
    for name, operation in operations.items():
        times: dict[str, list[float]] = {s.name: [] for s in servers}
        for run in range(runs):
            for server in servers if run % 2 == 0 else reversed(servers):
                elapsed = operation(server, study, count)
                times[server.name].append(elapsed)
                print(f"  {name:6} {server.name:9} run {run + 1}: {elapsed:7.2f}s", flush=True)
        medians[name] = {system: statistics.median(values) for system, values in times.items()}
    return medians


def print_table(medians: dict[str, dict[str, float]], count: int, nbytes: int) -> None:
    print(f"\n{'operation':9} {'system':10} {'n':>6} {'inst/s':>9} {'MB/s':>8} {'dg/orthanc':>11}")
    for operation, by_system in medians.items():
        rate = {system: count / sec for system, sec in by_system.items()}
        for system, sec in by_system.items():
            ratio = f"{rate['dicomgate'] / rate['orthanc']:.2f}" if system == "dicomgate" else ""
            mbs = nbytes / sec / 1e6
            print(
                f"{operation:9} {system:10} {count:6d} {rate[system]:9.1f} {mbs:8.1f} {ratio:>11}"
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=500, help="instances in the study")
    parser.add_argument("--size", choices=("small", "large"), default="small")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-retrieve-") as tmp:
        base = Path(tmp)
        study = generate_study(base / "study", args.count, 64 if args.size == "small" else 512)
        sink_port = free_port()
        sink = start_sink(sink_port)
        servers = [start_dicomgate(base, sink_port), start_orthanc(base, sink_port)]
        try:
            for server in servers:
                load(server, base / "study")
            # A retrieve from the archive normally comes long after the load: it is measured
            # once the follower's one-time work is done.
            index = servers[0].workdir / "data" / "index.sqlite3"
            waited = wait_prepared(index, args.count)
            print(f"  dicomgate: metadata prepared {waited:.1f}s after the loads", flush=True)
            medians = measure(servers, args.runs, study, args.count)
        finally:
            for server in servers:
                stop(server)
            sink.terminate()
            sink.wait(timeout=30)
        print_table(medians, args.count, folder_bytes(base / "study"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
