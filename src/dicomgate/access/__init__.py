"""Read-only HTTP access to the archive index and the stored instances.

Nothing is imported here: the settings import ``access.dicomweb.config``, and every process
that reads its settings (the CLI, receiver and import workers) would otherwise load FastAPI.
The API is ``dicomgate.access.api``.
"""
