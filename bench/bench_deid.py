"""Benchmark: dicomgate Basic Profile de-identification versus dicognito, in one run.

Usage: python bench/bench_deid.py --count 300 --rounds 5

Generates N CT-like instances (512x512, 16-bit, realistic header with names, dates, UIDs,
nested sequences and private tags) in a temp folder, then times read + de-identify + write
over the same files for both tools, alternating which goes first in each round, and prints
the median instances/s of each and their ratio, by the wall clock and by CPU time (on a
shared machine the wall clock also measures the neighbours; CPU time is the steadier one).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from ct_corpus import fill_identifying_header
from dicomgate.deid import DeidKeys, apply, load_profile
from dicomgate.deid.offline import write_dataset


def make_ct(index: int, study: str, series: str, frame: str, pixels: bytes) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    sop = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = sop
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, sop
    fill_identifying_header(ds, study, "ACC123456", "PID0001234")
    ds.OtherPatientIDs, ds.PatientAddress = "OTHER42", "2 Elm Road"
    ds.DeviceSerialNumber, ds.SoftwareVersions, ds.ProtocolName = "SN998877", "V1", "THORAX"
    ds.SliceThickness, ds.KVP = "1.0", "120"
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
    ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = "S1", 2, index + 1
    ds.ImagePositionPatient = [-250.0, -250.0, -index * 1.0]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.SliceLocation = -index * 1.0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows = ds.Columns = 512
    ds.PixelSpacing = [0.9765625, 0.9765625]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleIntercept, ds.RescaleSlope, ds.WindowCenter, ds.WindowWidth = "-1024", "1", 40, 400
    block = ds.private_block(0x0019, "ACME CT PRIVATE", create=True)
    block.add_new(0x10, "LO", "DOE JOHN")
    block.add_new(0x11, "DS", "1.5")
    ds.PixelData = pixels
    return ds


def generate(folder: Path, count: int) -> list[Path]:
    rng = np.random.default_rng(0)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    paths = []
    for i in range(count):
        pixels = rng.integers(0, 4096, (512, 512), dtype=np.uint16).tobytes()
        path = folder / f"ct{i:05d}.dcm"
        make_ct(i, study, series, frame, pixels).save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def run_dicomgate(paths: list[Path], out: Path) -> None:
    profile = load_profile({"name": "bench-basic"})
    keys = DeidKeys(uid_secret=b"bench-project-secret-0123456789", subject_id="SUBJ-0001")
    for i, path in enumerate(paths):
        result = apply(dcmread(path), profile, keys)
        assert result.dataset is not None
        write_dataset(result.dataset, out / f"{i:05d}.dcm")


def run_dicognito(paths: list[Path], out: Path) -> None:
    from dicognito.anonymizer import Anonymizer

    anonymizer = Anonymizer(seed="bench")
    for i, path in enumerate(paths):
        ds = dcmread(path)
        anonymizer.anonymize(ds)
        ds.save_as(out / f"{i:05d}.dcm", enforce_file_format=True)


def timed(
    run: Callable[[list[Path], Path], None], paths: list[Path], out: Path
) -> tuple[float, float]:
    """Return (wall-clock rate, CPU-time rate) in instances/s for one run."""
    out.mkdir()
    wall, cpu = time.perf_counter(), time.process_time()
    run(paths, out)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    shutil.rmtree(out)
    return len(paths) / wall, len(paths) / cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5, help="alternating runs per tool")
    args = parser.parse_args()
    tools = {"dicomgate": run_dicomgate, "dicognito": run_dicognito}
    rates: dict[str, list[tuple[float, float]]] = {name: [] for name in tools}
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        (tmp / "in").mkdir()
        paths = generate(tmp / "in", args.count)
        print(f"{args.count} CT instances, 512x512x16 bit; read + de-identify + write")
        for round_ in range(args.rounds):
            order = list(tools) if round_ % 2 == 0 else list(reversed(tools))
            for label in order:
                wall, cpu = timed(tools[label], paths, tmp / f"{label}-{round_}")
                rates[label].append((wall, cpu))
                print(f"  round {round_ + 1} {label:10s} {wall:8.1f}/s wall {cpu:8.1f}/s CPU")
        for index, clock in ((0, "wall-clock"), (1, "CPU-time")):
            ours = statistics.median(r[index] for r in rates["dicomgate"])
            theirs = statistics.median(r[index] for r in rates["dicognito"])
            print(
                f"median {clock}: dicomgate {ours:.1f}/s, dicognito {theirs:.1f}/s, "
                f"ratio {ours / theirs:.2f}x (target >= 3x)"
            )
        in_memory(paths)


def in_memory(paths: list[Path]) -> None:
    """Time the de-identification step alone (datasets already read, nothing written)."""
    from dicognito.anonymizer import Anonymizer

    profile = load_profile({"name": "bench-basic"})
    keys = DeidKeys(uid_secret=b"bench-project-secret-0123456789", subject_id="SUBJ-0001")
    ours = [dcmread(p) for p in paths]
    start = time.perf_counter()
    for ds in ours:
        apply(ds, profile, keys)
    ours_rate = len(paths) / (time.perf_counter() - start)
    theirs, anonymizer = [dcmread(p) for p in paths], Anonymizer(seed="bench")
    start = time.perf_counter()
    for ds in theirs:
        anonymizer.anonymize(ds)
    theirs_rate = len(paths) / (time.perf_counter() - start)
    print(
        f"de-identify step only: dicomgate {ours_rate:.1f}/s, dicognito {theirs_rate:.1f}/s, "
        f"ratio {ours_rate / theirs_rate:.2f}x"
    )


if __name__ == "__main__":
    main()
