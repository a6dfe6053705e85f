"""dicomgate: research DICOM intake and archive."""

__version__ = "0.1.0"
