"""Machine configuration: where state lives and how managed envs get their packages.

Precedence, lowest first: built-in default < config file < `STEMSEP_<KEY>` variable < CLI flag.
The config file is `config.toml` in the platformdirs config dir, or `$STEMSEP_HOME/config/config.toml`
when STEMSEP_HOME is set (STEMSEP_HOME relocates all state). Every value remembers where it came from,
so `stemsep env config` can show it. Keys are documented in docs/configuration.md.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from envmgr.errors import ConfigError

APP_NAME = "stemsep"
CONFIG_FILE_NAME = "config.toml"

# uv's --torch-backend values, plus `none`: do not pass the flag (torch comes from indexes/find-links).
_TORCH_BACKEND = re.compile(r"^(auto|none|cpu|xpu|cu\d{2,3}|rocm\d+(\.\d+)*)$")
ENFORCEMENT_MODES = ("strict", "soft", "report")
LINK_MODES = ("hardlink", "copy", "clone")  # uv's --link-mode values we use (not symlink)
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclass(frozen=True)
class Key:
    name: str
    kind: str  # str | list | path | paths | bool | int (a whole number >= 0)
    help: str
    default: Callable[["_Dirs"], Any] = lambda d: None


@dataclass(frozen=True)
class _Dirs:
    """Default locations: under STEMSEP_HOME when set, else the platform's usual dirs."""

    home: Path | None

    def _platform(self, kind: str) -> Path:
        import platformdirs

        return Path(getattr(platformdirs, f"user_{kind}_dir")(APP_NAME, appauthor=False))

    @property
    def config(self) -> Path:
        return self.home / "config" if self.home else self._platform("config")

    @property
    def data(self) -> Path:
        return self.home if self.home else self._platform("data")

    @property
    def cache(self) -> Path:
        return self.home / "cache" if self.home else self._platform("cache")

    @property
    def logs(self) -> Path:
        return self.home / "logs" if self.home else self._platform("log")


KEYS: dict[str, Key] = {k.name: k for k in (
    Key("index_url", "str", "Main package index (PEP 503 simple API) for new envs; default: PyPI."),
    Key("extra_index_urls", "list", "Further package indexes, searched after index_url.", lambda d: []),
    Key("find_links", "list", "Dirs or URLs with wheels (offline wheelhouses, a local torch wheel).", lambda d: []),
    Key("constraints", "list", "PEP 508 constraints applied to every env, e.g. `numpy<3`.", lambda d: []),
    Key("overrides", "list", "PEP 508 pins that replace every other requirement on that package, "
        "e.g. `torch==2.13.0+cpu`.", lambda d: []),
    Key("torch_backend", "str", "Which torch build: cpu | cuXXX | rocmX.Y | xpu | auto (uv detects the GPU) | "
        "none (no --torch-backend; torch comes from indexes, find-links, overrides).", lambda d: "auto"),
    Key("python", "str", "Preferred Python version for new envs (e.g. 3.11), used when the model allows it."),
    Key("python_paths", "paths", "Explicit Python interpreters to consider besides the ones uv discovers.",
        lambda d: []),
    Key("use_uv", "bool", "Build with uv (fast, hardlinked). false: virtualenv + pip from the same lock.",
        lambda d: True),
    Key("offline", "bool", "Never touch the network: resolve and install only from caches and find-links.",
        lambda d: False),
    Key("env_store", "path", "Where managed envs live.", lambda d: d.data / "envs"),
    Key("cache_dir", "path", "StemSep's caches (resolved locks, interpreter lookups, the registry's verdict and "
        "listing index).", lambda d: d.cache),
    Key("uv_cache_dir", "path", "uv's package cache; keep it on the env store's filesystem so envs hardlink "
        "into it.", lambda d: d.cache / "uv"),
    Key("model_store", "path", "Where model files (checkpoints, configs, code artifacts) are kept.",
        lambda d: d.data / "models"),
    Key("log_dir", "path", "Build and worker logs.", lambda d: d.logs),
    Key("state_dir", "path", "Records of your own decisions: confirmed manual steps, trusted code.",
        lambda d: d.data / "state"),
    Key("recipe_cache_limit", "str", "Size limit of the recipe step cache (<state_dir>/recipe-cache: each step's "
        "stems, found again by content), e.g. 500M or 20G; the least recently used entries go first. "
        "`stemsep cache prune` applies it now.", lambda d: "10G"),
    Key("debug_bundle_keep", "int", "How many debug bundles each bundle folder keeps (<log_dir>/debug-bundles, a "
        "batch's <output dir>/.stemsep-batch/bundles): writing one removes the oldest beyond it; 0 keeps all.",
        lambda d: 50),
    Key("serve_output_dirs", "paths", "Dirs `stemsep serve` may write stems into (a job's output_dir must lie inside "
        "one). Default: <state_dir>/serve/outputs.", lambda d: []),
    Key("serve_jobs_keep", "int", "How many finished jobs `stemsep serve` keeps in its queue (with their events), "
        "the most recently finished first; older ones are removed at start-up and hourly. 0: no count limit. "
        "Their stems are never removed.", lambda d: 1000),
    Key("serve_jobs_keep_days", "int", "Finished jobs of `stemsep serve` older than this many days are removed with "
        "their events (stems stay). 0: no age limit.", lambda d: 30),
    Key("enforcement", "str", "What preflight does with problems it finds: strict (block), soft (block unless "
        "--dev-override), report (only report).", lambda d: "strict"),
    Key("registry_strict", "bool", "A user registry file (`<config dir>/registries/*.json`) that cannot be read "
        "or breaks a rule stops every command, as before. Default false: it is reported once and left out, and "
        "everything that does not need its models runs.", lambda d: False),
    Key("prewarm", "bool", "separate starts the worker it used last time for the same model arguments while it "
        "plans, so the worker's imports overlap the host's; the plan still decides (an unneeded one is stopped).",
        lambda d: True),
    Key("link_mode", "str", "How uv puts package files into envs: hardlink (shares them with uv's cache: an edit "
        "in one env changes the cache and every env sharing the file), copy, or clone (copy-on-write where the "
        "filesystem can). Use copy if you edit files inside envs; `stemsep env verify` finds such edits.",
        lambda d: "hardlink"),
    Key("adopted_envs", "list", "Per runtime, the adopted env (`stemsep env adopt`) its jobs run in unless --env "
        "names another: RUNTIME=NAME items, e.g. `msst=my-msst`.", lambda d: []),
)}


@dataclass(frozen=True)
class MachineConfig:
    index_url: str | None
    extra_index_urls: list[str]
    find_links: list[str]
    constraints: list[str]
    overrides: list[str]
    torch_backend: str
    python: str | None
    python_paths: list[Path]
    use_uv: bool
    offline: bool
    env_store: Path
    cache_dir: Path
    uv_cache_dir: Path
    model_store: Path
    log_dir: Path
    state_dir: Path
    recipe_cache_limit: str
    debug_bundle_keep: int
    serve_output_dirs: list[Path]
    serve_jobs_keep: int
    serve_jobs_keep_days: int
    enforcement: str
    registry_strict: bool
    prewarm: bool
    link_mode: str
    adopted_envs: list[str]
    config_file: Path
    home: Path | None = None
    # key -> where its value came from: "default", "STEMSEP_HOME", "config file", "env STEMSEP_X", "cli".
    sources: dict[str, str] = field(default_factory=dict, compare=False)

    def as_dict(self) -> dict[str, Any]:
        """Effective values, JSON-ready."""
        out: dict[str, Any] = {}
        for name in KEYS:
            value = getattr(self, name)
            if isinstance(value, Path):
                value = str(value)
            elif isinstance(value, list):
                value = [str(v) for v in value]
            out[name] = value
        return out


def config_file_path(home: Path | None = None) -> Path:
    home = home if home is not None else _home_from_env()
    return _Dirs(home).config / CONFIG_FILE_NAME


def config_dir() -> Path:
    """Where config.toml and the user's registry overlays (`registries/`) live."""
    return _Dirs(_home_from_env()).config


def directory(name: str) -> Path:
    """Where one of the configured dirs (cache_dir, state_dir, model_store, ...) is, decided exactly as
    `load_config` decides it but without reading the other keys: for callers that need one dir fast
    (`stemsep models list` caches its index in cache_dir)."""
    if KEYS[name].kind != "path":
        raise ValueError(f"{name} is not a directory key")
    return setting(name)


def setting(name: str) -> Any:
    """One key's value, decided exactly as `load_config` decides it but without reading the other keys."""
    key = KEYS[name]
    home = _home_from_env()
    path = _Dirs(home).config / CONFIG_FILE_NAME
    value, _ = _layered(key, _Dirs(home), _read_file(path), path)
    return value


def _layered(key: Key, dirs: _Dirs, file_values: dict[str, Any], path: Path) -> tuple[Any, str]:
    """One key's value and where it came from, CLI flags aside: default < config file < STEMSEP_<KEY>."""
    value, source = key.default(dirs), "STEMSEP_HOME" if dirs.home and key.kind == "path" else "default"
    if key.name in file_values:
        value, source = _coerce(key, file_values[key.name], origin=f"{path}", base=path.parent), f"config file {path}"
    var = env_var(key.name)
    if var in os.environ:
        value, source = _coerce(key, os.environ[var], origin=var, base=Path.cwd()), f"env {var}"
    return value, source


def load_config(**cli_overrides: Any) -> MachineConfig:
    """Effective machine configuration. CLI flags come in as keyword arguments; None means "not given"."""
    unknown = sorted(set(cli_overrides) - set(KEYS))
    if unknown:
        raise ConfigError(f"unknown config key(s): {', '.join(unknown)}", hint=f"known keys: {', '.join(KEYS)}")
    home = _home_from_env()
    dirs = _Dirs(home)
    path = dirs.config / CONFIG_FILE_NAME
    file_values = _read_file(path)
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for key in KEYS.values():
        values[key.name], sources[key.name] = _layered(key, dirs, file_values, path)
    for name, raw in cli_overrides.items():
        if raw is None:
            continue
        values[name] = _coerce(KEYS[name], raw, origin=f"--{name.replace('_', '-')}", base=Path.cwd())
        sources[name] = "cli"
    _validate(values)
    return MachineConfig(**values, config_file=path, home=home, sources=sources)


def file_layer(file_values: dict[str, Any], path: Path) -> dict[str, Any]:
    """What loading makes of `file_values` as the config file `path` over the defaults, variables and
    flags aside: every value parsed by the loader's own parser and the whole checked as load_config checks
    it (its ConfigError when not). `stemsep env config set` checks a file this way before writing it."""
    dirs = _Dirs(_home_from_env())
    values = {key.name: key.default(dirs) for key in KEYS.values()}
    for name, raw in file_values.items():
        values[name] = _coerce(KEYS[name], raw, origin=f"{path}", base=path.parent)
    _validate(values)
    return values


def parse_value(name: str, raw: Any, *, origin: str) -> Any:
    """One key's value parsed as loading parses it (its ConfigError when bad); relative paths against the cwd."""
    return _coerce(KEYS[name], raw, origin=origin, base=Path.cwd())


def read_config_file(path: Path) -> dict[str, Any]:
    """The raw values of a config file as TOML gives them ({} when there is none); its errors as loading's."""
    return _read_file(path)


def env_var(key: str) -> str:
    return f"STEMSEP_{key.upper()}"


def _home_from_env() -> Path | None:
    raw = os.environ.get("STEMSEP_HOME")
    return Path(raw).expanduser().absolute() if raw else None


def _read_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):  # a file where a dir of its path should be: no config there
        return {}  # either; the dirs under it fail as a store error (exit 7) when they are needed
    except OSError as exc:
        raise ConfigError(f"cannot read the config file {path}", why=str(exc),
                          hint="fix its permissions or remove it") from exc
    if sys.version_info >= (3, 11):  # imported only when there is a file: `models list` reads the cache dir here
        import tomllib
    else:  # pragma: no cover - exercised on 3.10 only
        import tomli as tomllib
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"the config file {path} is not valid TOML", why=str(exc),
                          hint="fix the syntax (see docs/configuration.md) or remove the file") from exc
    unknown = sorted(set(data) - set(KEYS))
    if unknown:
        import difflib

        near = {u: difflib.get_close_matches(u, KEYS, n=1) for u in unknown}
        guess = "; ".join(f"{u} -> {n[0]}?" for u, n in near.items() if n)
        raise ConfigError(f"unknown key(s) in {path}: {', '.join(unknown)}",
                          why=f"known keys are: {', '.join(KEYS)}",
                          hint=(f"did you mean: {guess}" if guess else "remove or rename them"))
    return data


def _split_list(text: str) -> list[str]:
    """Commas or newlines separate items; os.pathsep too, except inside an item that is a URL."""
    items: list[str] = []
    for piece in re.split(r"[,\n]", text):
        items += [piece] if "://" in piece else piece.split(os.pathsep)
    return [item.strip() for item in items if item.strip()]


def _coerce(key: Key, raw: Any, *, origin: str, base: Path) -> Any:
    def bad(expected: str) -> ConfigError:
        return ConfigError(f"bad value for {key.name} in {origin}: {raw!r}", why=f"expected {expected}",
                           hint=f"{key.name}: {key.help}")

    if key.kind == "bool":
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.strip().lower() in _TRUE | _FALSE:
            return raw.strip().lower() in _TRUE
        raise bad("true or false")
    if key.kind == "int":
        if isinstance(raw, int) and not isinstance(raw, bool) and raw >= 0:
            return raw
        if isinstance(raw, str) and raw.strip().isdecimal():  # isdigit() takes '²', which int() refuses
            return int(raw.strip())
        raise bad("a whole number (0 or more)")
    if key.kind in ("list", "paths"):
        if isinstance(raw, str):
            items = _split_list(raw)
        elif isinstance(raw, (list, tuple)) and all(isinstance(i, (str, Path)) for i in raw):
            items = [str(i) for i in raw]
        else:
            raise bad("a list of strings")
        return [_as_path(i, base) for i in items] if key.kind == "paths" else items
    if not isinstance(raw, (str, Path)):
        raise bad("a string")
    text = str(raw).strip()
    if key.kind == "path":
        if not text:
            raise bad("a path")
        return _as_path(text, base)
    return text or None


def _as_path(text: str, base: Path) -> Path:
    path = Path(text).expanduser()
    return path if path.is_absolute() else (base / path).absolute()


def _validate(values: dict[str, Any]) -> None:
    backend = values["torch_backend"] or "auto"
    if not _TORCH_BACKEND.match(backend):
        raise ConfigError(f"unknown torch_backend {backend!r}",
                          why="uv knows cpu, cuXXX (e.g. cu126), rocmX.Y, xpu and auto; `none` leaves torch to "
                          "the indexes and find-links",
                          hint="set STEMSEP_TORCH_BACKEND / torch_backend to one of those")
    values["torch_backend"] = backend
    mode = (values["enforcement"] or "strict").lower()
    if mode not in ENFORCEMENT_MODES:
        raise ConfigError(f"unknown enforcement mode {values['enforcement']!r}",
                          why="preflight knows strict (blocks), soft (blocks unless --dev-override) and report "
                          "(never blocks)", hint="set STEMSEP_ENFORCEMENT / enforcement to strict, soft or report")
    values["enforcement"] = mode
    link = (values["link_mode"] or "hardlink").lower()
    if link not in LINK_MODES:
        raise ConfigError(f"unknown link_mode {values['link_mode']!r}",
                          why="envs get their files from uv's cache as hardlinks (shared with the cache), copies or "
                          "copy-on-write clones; symlinks are refused: `uv cache clean` (which `env repair` runs) "
                          "would break every env linking there",
                          hint="set STEMSEP_LINK_MODE / link_mode to hardlink, copy or clone")
    values["link_mode"] = link
    pins = [(name, item) for name in ("constraints", "overrides") for item in values[name]]
    if pins:  # packaging is imported only when there is something to check (every CLI start loads the config)
        from packaging.requirements import InvalidRequirement, Requirement

        for name, item in pins:
            try:
                Requirement(item)
            except InvalidRequirement as exc:
                raise ConfigError(f"bad requirement in {name}: {item!r}", why=str(exc),
                                  hint="write a PEP 508 requirement such as `torch==2.13.0+cpu`") from exc
    python = values["python"]
    if python is not None and not re.match(r"^\d+(\.\d+){0,2}$", python):
        raise ConfigError(f"bad python version {python!r}", why="expected a version like 3.11 or 3.11.7",
                          hint="set STEMSEP_PYTHON / python to a version number")
