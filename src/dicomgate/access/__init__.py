"""Read-only HTTP access to the archive index and the stored instances."""

from dicomgate.access.api import create_api, install_error_handlers

__all__ = ["create_api", "install_error_handlers"]
