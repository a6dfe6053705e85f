from __future__ import annotations

from deid_builders import SECRET_A, rt_chain
from pydicom.dataset import Dataset

from dicomgate.deid import DeidKeys, Profile, apply, check_references


def _deid_all(datasets: list[Dataset], profile: Profile) -> list[Dataset]:
    keys = DeidKeys(SECRET_A, "SUBJ-0001")
    out = [apply(ds, profile, keys).dataset for ds in datasets]
    assert all(ds is not None for ds in out)
    return [ds for ds in out if ds is not None]


def test_rt_chain_resolves_before_and_after_deid(basic: Profile) -> None:
    chain = rt_chain()
    assert check_references(chain) == []
    assert check_references(_deid_all(chain, basic)) == []


def test_removing_a_slice_breaks_the_chain_before_and_after(basic: Profile) -> None:
    chain = rt_chain()
    del chain[1]
    before = check_references(chain)
    after = check_references(_deid_all(chain, basic))
    assert len(before) == len(after) == 2  # ContourImageSequence twice (study tree + contour)
    assert all("instance" in p for p in after)


def test_missing_plan_and_structure_set_are_reported(basic: Profile) -> None:
    chain = rt_chain()
    problems = check_references([c for c in chain if c.Modality not in ("RTPLAN", "RTSTRUCT")])
    assert problems == [
        f"RTDOSE {chain[-1].SOPInstanceUID}: references instance {chain[-2].SOPInstanceUID}, "
        "which is not in the set"
    ]


def test_missing_series_and_frame_of_reference_reported() -> None:
    chain = rt_chain()
    rest = [c for c in chain if c.Modality != "CT"]
    for ds in rest:
        ds.pop("FrameOfReferenceUID", None)
    problems = check_references(rest)
    kinds = {p.split("references ")[1].split(" ")[0] for p in problems}
    assert {"frame", "series", "instance"} <= kinds
