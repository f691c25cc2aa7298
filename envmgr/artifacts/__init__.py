"""Model artifacts: a local store with verified, resumable downloads and import of files users have.

See envmgr/artifacts/store.py for the API and envmgr/artifacts/layout.py for the layout on disk.
"""

from envmgr.artifacts.download import DownloadSettings
from envmgr.artifacts.events import ArtifactEvent, ProgressCallback
from envmgr.artifacts.store import ArtifactState, ArtifactStatus, ArtifactStore, RemovalReport

__all__ = ["ArtifactEvent", "ArtifactState", "ArtifactStatus", "ArtifactStore", "DownloadSettings",
           "ProgressCallback", "RemovalReport"]
