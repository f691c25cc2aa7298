"""Errors of the model store: every one says what, why and what to do, and exits with a distinct code.

Download and verification problems exit with ExitCode.ARTIFACT; a store that cannot hold the files
(not writable, not enough free space) raises the env manager's StoreError (ExitCode.STORE), as the
exit-code table says.
"""

from __future__ import annotations

from envmgr.errors import StoreError
from registry.errors import ExitCode, StemSepError


class ArtifactError(StemSepError):
    exit_code = ExitCode.ARTIFACT
    code = "E_ARTIFACT"


class NoSourceError(ArtifactError):
    """The registry gives no URL for an artifact that is not in the store."""

    code = "E_ARTIFACT_NO_SOURCE"


class HashRequiredError(ArtifactError):
    """`--require-hashes` and the registry pins no sha256 for an artifact."""

    code = "E_ARTIFACT_HASH_REQUIRED"


class HashMismatchError(ArtifactError):
    code = "E_ARTIFACT_SHA256_MISMATCH"


class SizeMismatchError(ArtifactError):
    code = "E_ARTIFACT_SIZE_MISMATCH"


class NotAFileError(ArtifactError):
    """The server answered with an HTML page (a login or error page) instead of the file."""

    code = "E_ARTIFACT_HTML_PAGE"


class DownloadFailedError(ArtifactError):
    """Every source failed (HTTP errors, timeouts, dropped connections beyond the retries...)."""

    code = "E_ARTIFACT_DOWNLOAD_FAILED"


class UnsafePathError(ArtifactError):
    """A model id, filename or store entry would read or write outside the model's folder."""

    code = "E_ARTIFACT_UNSAFE_PATH"


class OfflineError(ArtifactError):
    code = "E_ARTIFACT_OFFLINE"


class ImportSourceError(ArtifactError):
    """The file given to `models import` does not exist or is not a regular file."""

    exit_code = ExitCode.USAGE
    code = "E_ARTIFACT_IMPORT_SOURCE"


class InsufficientSpaceError(StoreError):
    """Not enough free space for a download, found before it starts."""

    code = "E_STORE_DISK_SPACE"


class MissingArtifactError(ArtifactError):
    """An artifact is not in the store and downloading is switched off."""

    code = "E_ARTIFACT_MISSING"


class StoreBusyError(ArtifactError):
    """Another process is downloading or importing into the model's folder."""

    code = "E_ARTIFACT_BUSY"
