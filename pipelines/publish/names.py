"""What every part of publishing shares: the names of a release's files, the manifest's format
line, the prefix of the footer's keys, and the error that says what is wrong with a release.

A leaf: it imports nothing of the project, so any module may take a name from here.
"""

DATA_FILE = "data.parquet"
MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = "dp-synth release 1"
PREFIX = "synth."  # of the Parquet footer's key-values this tool writes


class PublishError(Exception):
    """A release that cannot be written or read; the message names the path and the fix."""
