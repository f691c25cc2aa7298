"""Which package source uv failed to reach, and the settings that fix it.

uv names the failing location in its output (`Failed to fetch: URL`, `Failed to read `--find-links`
directory: DIR`); this maps it back to the machine-config setting that brought it in (index_url,
extra_index_urls, find_links, torch_backend's PyTorch index, or PyPI by default), so an error blames the
host that failed and its hint gives the `stemsep env config` commands that change that setting.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from urllib.parse import urlsplit

from envmgr.config import MachineConfig, env_var
from envmgr.envs.uvtool import PYTORCH_INDEX, Sources

_FIND_LINKS = re.compile(r"Failed to read `--find-links` (directory|URL): (\S+)")
_URL = re.compile(r"(?:Failed to fetch:|error sending request for url \()\s*`?(\w+://[^\s`)]+)")
_PYPI_HOSTS = ("pypi.org", "files.pythonhosted.org")
_FLAGS = {"index_url": "--index-url", "extra_index_urls": "--extra-index-url", "find_links": "--find-links",
          "torch_backend": "--torch-backend"}


@dataclass(frozen=True)
class FailedSource:
    location: str  # the URL or dir uv reported
    setting: str  # the config key that brought it in; "" for PyPI (the default index) or a host we cannot place
    what: str  # names the source for a message, with the configured value that brought it in
    missing_dir: bool = False  # a find-links dir that cannot be read

    def problem(self, uv_output: str) -> str:
        """`<source> <what went wrong> (<location>)`, for a message."""
        if self.missing_dir:
            return f"{self.what} cannot be read"
        went = "answered with an error" if "HTTP status" in uv_output else "is unreachable"
        return f"{self.what} {went} ({self.location})"


def failed_source(uv_output: str, sources: Sources) -> FailedSource | None:
    """The location uv reports as failing, placed among the request's sources; None when uv names none."""
    if match := _FIND_LINKS.search(uv_output):
        kind, where = match.groups()
        if kind == "directory":
            return FailedSource(where, "find_links", f"the find-links dir {where}", missing_dir=True)
        return FailedSource(where, "find_links", "the find-links URL (find_links)")
    if not (match := _URL.search(uv_output)):
        return None
    url = match.group(1)
    for setting, label, configured in (
            ("find_links", "the find-links location", sources.find_links),
            ("index_url", "the package index", (sources.index_url or "",)),
            ("extra_index_urls", "the extra package index", sources.extra_index_urls)):
        for prefix in configured:
            if prefix and url.startswith(prefix.rstrip("/")):
                return FailedSource(url, setting, f"{label} {prefix} ({setting})")
    if urlsplit(url).netloc == urlsplit(PYTORCH_INDEX).netloc and sources.torch_backend != "none":
        return FailedSource(url, "torch_backend", f"PyTorch's package index (torch_backend = {sources.torch_backend})")
    return FailedSource(url, "", "PyPI" if _is_pypi(url) else f"the package host {urlsplit(url).netloc}")


def hint_for(failed: FailedSource, config: MachineConfig) -> str:
    """The settings that fix a failed source, as commands; and the variable that would hide them."""
    def cmd(*args: str) -> str:
        return "`stemsep env config " + " ".join(shlex.quote(a) for a in args) + "`"

    wheels = config.find_links[0] if config.find_links else "/path/to/wheels"
    if failed.setting == "torch_backend":
        fix = (f"torch_backend is {config.torch_backend} ({config.sources.get('torch_backend', 'default')}), so uv "
               "takes torch from PyTorch's index; without a route there, take torch from a local wheel: "
               f"{cmd('set', 'find_links', wheels)}, {cmd('set', 'overrides', 'torch==<version>+cpu')} and "
               f"{cmd('set', 'torch_backend', 'none')}; or check the network/proxy to {urlsplit(PYTORCH_INDEX).netloc}")
    elif failed.missing_dir:
        fix = (f"create it with the wheels in it, or point find_links at the dir that has them: "
               f"{cmd('set', 'find_links', '/path/to/wheels')}, or {cmd('unset', 'find_links')}")
    elif failed.setting == "find_links":
        fix = (f"make it reachable, or drop it: {cmd('set', 'find_links', '<the locations that work>')} or "
               f"{cmd('unset', 'find_links')}")
    elif failed.setting == "index_url":
        fix = (f"make it reachable, or use another index: {cmd('set', 'index_url', '<URL>')}, or "
               f"{cmd('unset', 'index_url')} for PyPI")
    elif failed.setting == "extra_index_urls":
        fix = (f"make it reachable, or drop it: {cmd('set', 'extra_index_urls', '<the indexes that work>')} or "
               f"{cmd('unset', 'extra_index_urls')}")
    else:
        fix = (f"check the network or proxy (HTTPS_PROXY); or use a mirror: {cmd('set', 'index_url', '<URL>')}; "
               f"or a local wheelhouse: {cmd('set', 'find_links', wheels)} and {cmd('set', 'offline', 'true')}")
    source = config.sources.get(failed.setting, "") if failed.setting else ""
    if source.startswith("env "):
        fix += f". The value comes from {env_var(failed.setting)}, which wins over config.toml: change or unset it"
    elif source == "cli":
        fix += f". The value comes from the {_FLAGS.get(failed.setting, failed.setting)} flag"
    return fix


def _is_pypi(url: str) -> bool:
    host = urlsplit(url).netloc
    return any(host == h or host.endswith("." + h) for h in _PYPI_HOSTS)
