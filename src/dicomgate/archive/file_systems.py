"""What the file system under a folder promises when a freshly created file is fsynced.

POSIX makes a new file's name durable only once its folder is fsynced too. Some Linux file
systems make the name durable with the file's own fsync, when the folder already existed:

- ext4 with a journal commits the transaction that created the name together with the inode
  (one handle adds the entry and allocates the inode);
- ext4 without a journal writes the folder of a file created since its last fsync
  (``ext4_sync_parent``, for inodes marked ``EXT4_STATE_NEWENTRY``);
- XFS forces its log up to the inode's last change, which comes after the create;
- btrfs logs a new inode's names in its tree log with the inode (RocksDB skips the folder's
  fsync on btrfs for this reason).

There the folder's fsync only flushes the disk's write cache a second time. That cost a
tenth of a millisecond on the development VM, and more on a loaded disk, for every instance
stored alone (a C-STORE, a retrieved instance, a one-instance STOW-RS request): about 8 % of
the rate of small C-STOREs. Anywhere else (another file system, an overlay, a network share,
a platform without ``/proc``), the folder is fsynced as POSIX asks.
"""

from __future__ import annotations

import os
from pathlib import Path

MOUNTINFO = Path("/proc/self/mountinfo")
# Linux file system types (as /proc names them) whose fsync of a new file makes its name in
# an existing folder durable too. "ext2" and "ext3" are left out: the ext2 driver has no
# such step, and a kernel may mount either with it.
NAMES_SYNCED_WITH_FILE = frozenset({"ext4", "xfs", "btrfs"})


def file_system_type(path: Path, mountinfo: Path = MOUNTINFO) -> str | None:
    """Return the type of the file system holding ``path`` (``ext4``, ``xfs``...), or None.

    Read from the mount table by the device number of ``path``; None when either cannot be
    read or no mount has that device (btrfs subvolumes report a device of their own).
    """
    try:
        device = os.stat(path).st_dev
        table = mountinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    wanted = f"{os.major(device)}:{os.minor(device)}"
    for line in table.splitlines():
        fields = line.split()
        # mount id, parent id, major:minor, root, mount point, options, optional fields...,
        # "-", type, source, super options
        if len(fields) < 9 or fields[2] != wanted or "-" not in fields[6:]:
            continue
        rest = fields[fields.index("-", 6) + 1 :]
        if rest:
            return rest[0]
    return None


def new_names_synced_with_file(path: Path, mountinfo: Path = MOUNTINFO) -> bool:
    """Return True when fsyncing a new file below ``path`` also makes its name durable."""
    return file_system_type(path, mountinfo) in NAMES_SYNCED_WITH_FILE
