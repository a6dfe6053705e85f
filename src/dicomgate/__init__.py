"""dicomgate: research DICOM intake and archive."""

import os

# numpy's OpenBLAS starts a thread per core that spins for about 0.1 s of CPU after the import,
# in every process (the service, each receiving and import process, the CLI). dicomgate's
# numpy work (rendering, pixel de-identification) does no linear algebra, so one thread is
# enough; a value set by the user is kept. Set before anything imports numpy.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

__version__ = "0.1.0"
