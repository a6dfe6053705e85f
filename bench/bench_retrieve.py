"""Benchmark: retrieve a 1,000-instance study from Orthanc, dicomgate versus dcmtk.

Usage: .venv/bin/python bench/bench_retrieve.py [--count N] [--size 512|64] [--runs K]

One Orthanc (Debian package) holds one generated CT study (``--count`` instances in 4 series,
512x512 16-bit by default). Per run, alternating, on fresh empty destinations:

- dcmtk C-MOVE: ``movescu`` asks Orthanc to move the study to a dcmtk ``storescp``;
- dicomgate C-MOVE: ``dicomgate serve`` (its receiver with one process per core, job queue,
  SQLite) gets a ``pacs_retrieve`` job over REST: an IMAGE-level find for the expected list,
  one C-MOVE per series into its receiver, durable intake, reconciliation, the job's items;
- dcmtk C-GET: ``getscu`` retrieves the study and writes the files itself;
- dicomgate C-GET: the same job by C-GET on dicomgate's own association.

Timed: from the start of the request (for dicomgate: the job's submission) until every
instance is stored (for dicomgate: the job's ``finished_at``). Prints instances/s and the
dicomgate/dcmtk ratio of the medians (target >= 80 %).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.uid import generate_uid

from bench_store import PYTHON, free_port, make_instance, settle_writes, wait_http

ENV = {**os.environ, "TCP_NODELAY": "1"}
SERIES = 4


def make_study(folder: Path, count: int, size: int) -> str:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(size)
    dtype, top = (np.uint16, 4096) if size == 512 else (np.uint8, 256)
    pixels = [rng.integers(0, top, (size, size), dtype=dtype).tobytes() for _ in range(8)]
    study = generate_uid()
    series = [generate_uid() for _ in range(SERIES)]
    for i in range(count):
        ds = make_instance(i, study, series[i % SERIES], size, pixels[i % len(pixels)])
        ds.save_as(folder / f"i{i:06d}.dcm", enforce_file_format=True)
    return study


def start_orthanc(
    work: Path, modalities: dict[str, list[object]]
) -> tuple[subprocess.Popen[bytes], int]:
    http, dicom = free_port(), free_port()
    config = {
        "Name": "bench", "StorageDirectory": str(work / "storage"),
        "IndexDirectory": str(work / "index"), "DicomAet": "ORTHANC", "DicomPort": dicom,
        "HttpPort": http, "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
        "DicomCheckCalledAet": False, "DicomAlwaysAllowGet": True, "DicomAlwaysAllowMove": True,
        "DicomAlwaysAllowStore": True, "DicomAlwaysAllowFind": True,
        "DicomModalities": modalities, "Plugins": [],
    }  # fmt: skip
    work.mkdir(parents=True, exist_ok=True)
    (work / "orthanc.json").write_text(json.dumps(config))
    with (work / "orthanc.log").open("wb") as log:
        proc = subprocess.Popen(["/usr/sbin/Orthanc", str(work / "orthanc.json")], stdout=log,
                                stderr=subprocess.STDOUT, env=ENV)  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{http}/system", timeout=1)
            return proc, dicom
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("Orthanc did not start")


def run(cmd: list[str]) -> None:
    done = subprocess.run(cmd, env=ENV, capture_output=True, check=False)
    if done.returncode != 0 or b"E: " in done.stderr:
        raise RuntimeError(f"{cmd[0]} failed: {done.stderr.decode()[-2000:]}")


def dcmtk_move(base: Path, port: int, study: str, count: int) -> float:
    out, scp_port = base / "storescp", STORESCP_PORT
    out.mkdir()
    scp = subprocess.Popen(
        ["storescp", "-aet", "STORESCP", "-od", str(out), str(scp_port)], env=ENV
    )
    time.sleep(0.5)
    try:
        start = time.perf_counter()
        run(["movescu", "-aet", "BENCHSCU", "-aec", "ORTHANC", "-aem", "STORESCP", "-S",
             "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}",
             "127.0.0.1", str(port)])  # fmt: skip
        elapsed = time.perf_counter() - start
    finally:
        scp.send_signal(signal.SIGTERM)
        scp.wait(timeout=30)
    assert len(list(out.iterdir())) == count, "storescp did not get every instance"
    return elapsed


def dcmtk_get(base: Path, port: int, study: str, count: int) -> float:
    out = base / "getscu"
    out.mkdir()
    start = time.perf_counter()
    run(["getscu", "-aet", "BENCHSCU", "-aec", "ORTHANC", "-S", "-od", str(out),
         "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}",
         "127.0.0.1", str(port)])  # fmt: skip
    elapsed = time.perf_counter() - start
    assert len(list(out.iterdir())) == count, "getscu did not get every instance"
    return elapsed


def start_dicomgate(base: Path, port: int, method: str) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``dicomgate serve`` on a fresh data folder; return it with its API's URL."""
    node = {"name": "orthanc", "ae_title": "ORTHANC", "host": "127.0.0.1", "port": port,
            "retrieve_method": method, "max_requests_per_minute": 1000,
            "max_associations": 4}  # fmt: skip
    http = free_port()
    config = {
        "data_dir": str(base / "data"), "http_port": http, "dicom_port": DICOMGATE_PORT,
        "ae_title": "DICOMGATE", "log_level": "WARNING", "stable_after": 3600,
        "auth": {"enabled": False}, "pacs": {"nodes": [node]},
    }  # fmt: skip
    path = base / "config.yaml"
    path.write_text(json.dumps(config), encoding="utf-8")  # JSON is YAML
    cmd = [str(PYTHON), "-m", "dicomgate", "serve", "--config", str(path)]
    with (base / "server.log").open("wb") as log:
        proc = subprocess.Popen(cmd, cwd=base, stdout=log, stderr=subprocess.STDOUT)
    api = f"http://127.0.0.1:{http}/api"
    wait_http(f"{api}/health", proc)
    return proc, api


def _epoch(timestamp: str) -> float:
    """Return the seconds since the epoch of an API timestamp (ISO 8601, UTC)."""
    return dt.datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def call(method: str, url: str, body: object = None) -> dict[str, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data, {"Content-Type": "application/json"})
    request.method = method
    with urllib.request.urlopen(request, timeout=30) as response:
        return dict(json.load(response))


def dicomgate(method: str) -> Callable[[Path, int, str, int], float]:
    def retrieve(base: Path, port: int, study: str, count: int) -> float:
        server, api = start_dicomgate(base, port, method)
        try:
            start = time.time()
            target = {"level": "STUDY", "uid": study}
            job = call("POST", f"{api}/pacs/orthanc/retrieve", {"targets": [target]})
            # Each look costs the server about 6 ms of CPU (at 20 a second a profile put 1.5 s
            # of a 12 s retrieve there), so it looks 5 times a second, and the time ends at the
            # job's own finished_at (same machine, same clock), not at the look that saw it.
            while (state := call("GET", f"{api}/jobs/{job['job_id']}"))["finished_at"] is None:
                time.sleep(0.2)
            elapsed = _epoch(state["finished_at"]) - start
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=60)
        if state["status"] != "SUCCEEDED" or state["counts"] != {"stored": count}:
            log = (base / "server.log").read_text(errors="replace")[-4000:]
            raise RuntimeError(f"the retrieve ended {state['status']} {state['counts']}:\n{log}")
        return elapsed

    return retrieve


STORESCP_PORT = free_port()
DICOMGATE_PORT = free_port()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--size", type=int, choices=(512, 64), default=512)
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="dicomgate-bench-retrieve-"))
    modalities = {
        "STORESCP": ["STORESCP", "127.0.0.1", STORESCP_PORT],
        "DICOMGATE": ["DICOMGATE", "127.0.0.1", DICOMGATE_PORT],
    }
    orthanc, port = start_orthanc(tmp / "orthanc", modalities)
    try:
        print(f"generating {args.count} instances ({args.size}x{args.size}) ...", flush=True)
        study = make_study(tmp / "corpus", args.count, args.size)
        run(["storescu", "-aec", "ORTHANC", "+sd", "127.0.0.1", str(port), str(tmp / "corpus")])
        systems: dict[str, Callable[[Path, int, str, int], float]] = {
            "dcmtk movescu->storescp": dcmtk_move,
            "dicomgate C-MOVE": dicomgate("c-move"),
            "dcmtk getscu": dcmtk_get,
            "dicomgate C-GET": dicomgate("c-get"),
        }
        times: dict[str, list[float]] = {name: [] for name in systems}
        for index in range(args.runs):
            for name, system in systems.items():
                base = tmp / f"run{index}-{name.split()[0]}-{len(times[name])}-{name[-5:]}"
                base.mkdir()
                # Kept until the end: deleting a run's files slows the next run's file
                # creations on ext4 without a journal (see bench_store.stop).
                settle_writes()
                times[name].append(system(base, port, study, args.count))
                print(
                    f"  run {index + 1} {name}: {args.count / times[name][-1]:.1f} inst/s",
                    flush=True,
                )
        rate = {name: args.count / statistics.median(t) for name, t in times.items()}
        print(f"\n{args.count} instances {args.size}x{args.size}, median of {args.runs} run(s)")
        for name, value in rate.items():
            print(f"  {name:28s} {value:8.1f} instances/s")
        for ours, ref in (("dicomgate C-MOVE", "dcmtk movescu->storescp"),
                          ("dicomgate C-GET", "dcmtk getscu")):  # fmt: skip
            print(f"  {ours} / {ref}: {100 * rate[ours] / rate[ref]:.0f} % (target >= 80 %)")
    finally:
        orthanc.send_signal(signal.SIGTERM)
        orthanc.wait(timeout=60)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
