"""An env's lock as a requirements file that installs as is: `stemsep env lock ENV [-o FILE]`.

The lock pins every file by hash but not where the files are; the env was resolved from the machine
config's package sources (recorded in its request), so those go at the top as requirements-file options
(`--index-url`, `--extra-index-url`, `--find-links`), which `uv pip sync FILE` and `pip install -r FILE`
both read. A torch build from PyTorch's index (torch_backend) has no such option that uv reads from a
file; a comment says the flag to add.
"""

from __future__ import annotations

import re

from envmgr.config import MachineConfig
from envmgr.envs.uvtool import PYTORCH_INDEX, Sources


def exported_lock(lock_text: str, sources: Sources) -> str:
    """`lock_text` headed by the options that make its files findable from `sources`."""
    options = [f"--index-url {sources.index_url}"] if sources.index_url else []
    options += [f"--extra-index-url {url}" for url in sources.extra_index_urls]
    options += [f"--find-links {link}" for link in sources.find_links]
    torch_build = _torch_local_build(lock_text)
    notes = []
    if torch_build and sources.torch_backend != "none":
        notes = [f"# torch {torch_build} comes from PyTorch's index (torch_backend = {sources.torch_backend}): "
                 f"`uv pip sync --torch-backend {torch_build} FILE`, or for pip add "
                 f"`--extra-index-url {PYTORCH_INDEX}/{torch_build}`"]
    if not options and not notes:
        return lock_text
    header = ["# The package sources this env was resolved from (its machine config), so that",
              "# `uv pip sync FILE` finds every locked file:", *notes, *options]
    return "\n".join(header) + "\n" + lock_text


def machine_sources(config: MachineConfig) -> Sources:
    """The machine config's package sources, for an env whose record predates recorded requests."""
    return Sources(config.index_url, tuple(config.extra_index_urls), tuple(config.find_links), config.torch_backend)


def _torch_local_build(lock_text: str) -> str | None:
    """The local version of the locked torch (`cpu`, `cu126`, `rocm6.2`...), None when torch is PyPI's or absent."""
    match = re.search(r"^torch==[^+\s]+\+(\S+)", lock_text, re.M)
    return match.group(1) if match else None
