"""Publish: the only writer of releases, a directory that appears whole or not at all.

A release is a directory holding ``data.parquet`` (typed by the Schema, not inferred from the
frame) and extra files such as ``privacy_report.json``. Parquet writes are not atomic
(PRIVACY-RELIABILITY-NOTES §8: ``kill -9`` mid-write leaves footer-less files), so every file is
written into a hidden staging directory beside the target, fsynced, and the directory is then
renamed into place: a reader sees no release or a complete one, never a partial one. The last
file staged is ``manifest.json``, every other file's size and sha256 as written: the commit
record a reader checks a release against (``verify_release``, ``synth verify``).

The parts, each below the next (this package re-exports their public names):

    names     the release's file names, the manifest's format, PublishError (a leaf)
    atomic    a file or a folder put in place whole; leftovers of killed writers swept
    manifest  the commit record: written, read, verified, proof a folder may be replaced
    parquet   Arrow types from the Schema, the footer's ``synth.`` key-values, read back
    release   publish / publish_table / publish_folder: the three composed
"""

from pipelines.publish.atomic import atomic_write, process_alive, sweep_leftovers
from pipelines.publish.manifest import (
    MAX_MANIFEST,
    check_replaceable,
    is_release,
    list_in_manifest,
    read_manifest,
    remove_listed,
    verify_release,
)
from pipelines.publish.names import (
    DATA_FILE,
    MANIFEST_FILE,
    MANIFEST_FORMAT,
    PREFIX,
    PublishError,
)
from pipelines.publish.parquet import (
    footer_metadata,
    read_column_metadata,
    read_release_metadata,
    to_arrow,
)
from pipelines.publish.release import (
    Release,
    publish,
    publish_folder,
    publish_table,
    publish_tables,
)

# the names of the module this package replaced; a test that patches how files are written
# patches them where they are used: pipelines.publish.atomic (write_file, _swap_in, _exchange)
__all__ = [
    "DATA_FILE", "MANIFEST_FILE", "MANIFEST_FORMAT", "MAX_MANIFEST", "PREFIX", "PublishError",
    "Release", "atomic_write", "check_replaceable", "footer_metadata", "is_release",
    "list_in_manifest", "process_alive", "publish", "publish_folder", "publish_table",
    "publish_tables",
    "read_column_metadata", "read_manifest", "read_release_metadata", "remove_listed",
    "sweep_leftovers", "to_arrow", "verify_release",
]
