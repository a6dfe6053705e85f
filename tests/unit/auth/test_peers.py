"""Peer matching (``peer_for``) and the validation of ``auth.dicom_peers`` / TLS options."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dicomgate.auth.peers import host_matches, peer_for
from dicomgate.auth.settings import DicomOperation
from dicomgate.errors import ConfigError
from dicomgate.settings import Settings, load_settings

PEERS = [
    {"ae_title": "CT1", "hosts": ["10.1.0.0/16"], "operations": ["store"], "projects": ["LUNG"]},
    {"ae_title": "CT1", "hosts": ["192.0.2.9"], "operations": ["find", "move"]},
    {"ae_title": "WS", "hosts": ["localhost", "2001:db8::/32"], "operations": ["find"]},
]


def _settings(**values: Any) -> Settings:
    return load_settings(**values)


def test_known_peer_matched_by_ae_and_host() -> None:
    settings = _settings(auth={"dicom_peers": PEERS})
    peer = peer_for(settings, "CT1 ", "10.1.44.3")
    assert peer is not None and peer.allows("store") and not peer.allows(DicomOperation.FIND)
    assert peer.projects == {"LUNG"} and peer.sees("LUNG") and not peer.sees("BRAIN")
    other = peer_for(settings, "CT1", "192.0.2.9")
    assert other is not None and other.allows("move") and not other.allows("store")
    assert peer_for(settings, "CT1", "10.2.0.1") is None
    assert peer_for(settings, "NOBODY", "10.1.0.1") is None
    assert peer_for(settings, "WS", "127.0.0.1") is not None  # localhost resolves
    assert peer_for(settings, "WS", "2001:db8::5") is not None
    assert peer_for(settings, "WS", "::ffff:127.0.0.1") is not None  # IPv4-mapped


def test_open_receiver_admits_unknown_but_never_a_misplaced_known_ae() -> None:
    settings = _settings(auth={"dicom_peers": PEERS, "dicom_open": True})
    anyone = peer_for(settings, "ANYONE", "203.0.113.4")
    assert anyone is not None and not anyone.known and anyone.projects is None
    assert all(anyone.allows(op) for op in DicomOperation)
    assert peer_for(settings, "CT1", "203.0.113.4") is None


def test_no_peers_is_open_by_default_and_allowed_calling_aes_still_narrow() -> None:
    assert peer_for(_settings(), "ANY", "127.0.0.1") is not None
    assert peer_for(_settings(auth={"dicom_open": False}), "ANY", "127.0.0.1") is None
    narrowed = _settings(dicom_allowed_calling_aes=["CT1"])
    assert peer_for(narrowed, "CT1", "127.0.0.1") is not None
    assert peer_for(narrowed, "CT2", "127.0.0.1") is None


def test_projects_star_means_every_project_and_none_depends_on_openness() -> None:
    peers = [
        {"ae_title": "ALL", "hosts": ["127.0.0.1"], "projects": ["*"]},
        {"ae_title": "NONE", "hosts": ["127.0.0.1"]},
    ]
    closed = _settings(auth={"dicom_peers": peers})
    every = peer_for(closed, "ALL", "127.0.0.1")
    assert every is not None and every.projects is None and every.sees("ANY")
    nothing = peer_for(closed, "NONE", "127.0.0.1")
    assert nothing is not None and nothing.projects == frozenset() and not nothing.sees("LUNG")
    # Open: a listed peer naming no project sees what an unlisted AE would, every project.
    opened = peer_for(_settings(auth={"dicom_peers": peers, "dicom_open": True}), "NONE", "::1")
    assert opened is None  # its hosts still hold
    opened = peer_for(
        _settings(auth={"dicom_peers": peers, "dicom_open": True}), "NONE", "127.0.0.1"
    )
    assert opened is not None and opened.projects is None


def test_user_identity_policy_per_peer_or_global() -> None:
    peers = [
        {"ae_title": "KIOSK", "hosts": ["127.0.0.1"], "user_identity": "required"},
        {"ae_title": "CT1", "hosts": ["127.0.0.1"]},
    ]
    settings = _settings(auth={"dicom_peers": peers})
    kiosk, ct = peer_for(settings, "KIOSK", "127.0.0.1"), peer_for(settings, "CT1", "127.0.0.1")
    assert kiosk is not None and kiosk.user_identity == "required"
    assert ct is not None and ct.user_identity == "optional"
    strict = _settings(auth={"dicom_peers": peers, "dicom_user_identity": "required"})
    strict_ct = peer_for(strict, "CT1", "127.0.0.1")
    assert strict_ct is not None and strict_ct.user_identity == "required"
    with pytest.raises(ConfigError, match="user_identity"):
        _settings(auth={"dicom_peers": [{**peers[0], "user_identity": "sometimes"}]})


def test_host_matches_ignores_garbage_and_unresolvable_names() -> None:
    assert not host_matches(["10.0.0.0/8"], "not-an-address")
    assert not host_matches(["no-such-host.invalid"], "127.0.0.1")


@pytest.mark.parametrize(
    ("peer", "key"),
    [
        ({"ae_title": "CT1", "hosts": ["10.0.0.0/33"]}, "auth.dicom_peers.0.hosts"),
        ({"ae_title": "CT1", "hosts": ["bad host!"]}, "auth.dicom_peers.0.hosts"),
        ({"ae_title": "CT1", "hosts": []}, "auth.dicom_peers.0.hosts"),
        ({"ae_title": "CT1"}, "auth.dicom_peers.0.hosts"),
        ({"ae_title": "CT1", "hosts": ["::1"], "operations": ["delete"]}, "operations"),
        ({"ae_title": "A\\B", "hosts": ["::1"]}, "auth.dicom_peers.0.ae_title"),
        ({"ae_title": "X" * 17, "hosts": ["::1"]}, "auth.dicom_peers.0.ae_title"),
        ({"ae_title": "CT1", "hosts": ["::1"], "projects": ["no spaces"]}, "projects"),
        ({"ae_title": "CT1", "hosts": ["::1"], "port": 104}, "port: unknown option"),
    ],
)
def test_bad_peer_entries_name_the_key(peer: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_settings(auth={"dicom_peers": [peer]})


def test_allowed_calling_aes_and_peers_together_is_a_config_error(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        "dicom_allowed_calling_aes: [CT1]\n"
        "auth:\n  dicom_peers: [{ae_title: CT1, hosts: [127.0.0.1]}]\n"
    )
    with pytest.raises(ConfigError, match=r"dicom_allowed_calling_aes.*auth\.dicom_peers"):
        load_settings(config)


def test_https_certificate_needs_its_key() -> None:
    with pytest.raises(ConfigError, match="https_certificate and https_key"):
        load_settings(auth={"https_certificate": "/etc/cert.pem"})
