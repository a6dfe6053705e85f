"""The prearchive review: where a stable staging session is checked, held or archived.

Like ``pipeline.py`` (the spine it extends) this package calls across stages: it reads staged
headers (intake), asks the rules engine (``rules.decide``) and the index (archive) and moves the
session through RECEIVING -> READY -> ARCHIVING -> ARCHIVED, or holds it in CONFLICT / ERROR with
typed reasons until a data manager acts (``actions``, ``quarantine``).
"""
