"""Recommended settings and their declared meanings (seed §3.4, docs/DESIGN.md §4)."""

from __future__ import annotations

import math

from registry.rules.base import Hit, ModelContext, model_rule
from registry.settings import (OverlapLostError, ResolvedSettings, SettingsError, family_of, native_overlap_meaning,
                               pinned_version, resolve_settings, settings_rule)
from registry.vocab import LEGACY_OVERLAP_MEANINGS, OVERLAP_MEANINGS, RUNTIME_IDS

SEMANTICS = ("settings_semantics", "overlap")


@model_rule("overlap-meaning-vocab", summary="overlap meanings come from the closed vocabulary",
            hint="use divisor, ratio, seconds or none; legacy words (auto, ...) are accepted only in compat mode")
def meaning_vocab(entry, ctx: ModelContext):
    for runtime, word in entry.settings_semantics.overlap_semantics().meaning_by_runtime.items():
        if word in OVERLAP_MEANINGS or (ctx.mode == "compat" and word in LEGACY_OVERLAP_MEANINGS):
            continue
        legacy = " (a legacy word: it does not say which meaning applies)" if word in LEGACY_OVERLAP_MEANINGS else ""
        yield Hit(SEMANTICS + ("meaning_by_runtime", runtime), f"{word!r} is not an overlap meaning{legacy}")


@model_rule("overlap-meaning-runtime-keys", summary="meaning_by_runtime is keyed by canonical runtime ids",
            hint="key meaning_by_runtime by audio-separator, msst or stemsep-legacy")
def meaning_keys(entry, ctx: ModelContext):
    for runtime in entry.settings_semantics.overlap_semantics().meaning_by_runtime:
        if runtime not in RUNTIME_IDS:
            yield Hit(SEMANTICS + ("meaning_by_runtime", runtime), f"{runtime!r} is not a runtime id")


@model_rule("overlap-meaning-declared", summary="a recommended overlap declares its meaning", strict_only=True,
            hint="set settings_semantics.overlap.meaning to divisor, ratio or seconds")
def meaning_declared(entry, ctx: ModelContext):
    meaning = entry.settings_semantics.overlap_semantics().meaning
    if entry.recommended_settings.overlap is not None and meaning in (None, "none"):
        yield Hit(SEMANTICS + ("meaning",), f"recommended overlap {entry.recommended_settings.overlap} has no "
                  "declared meaning, so it cannot be translated for a runtime")


@model_rule("overlap-value-fits-meaning", summary="the recommended overlap is valid in its declared meaning",
            hint="divisor: integer >= 1; ratio: 0 <= r < 1; seconds: > 0; none: leave overlap null")
def value_fits(entry, ctx: ModelContext):
    value = entry.recommended_settings.overlap
    meaning = entry.settings_semantics.overlap_semantics().meaning
    if value is None or meaning is None:
        return
    finite = _finite(value)
    bad = {
        "divisor": not finite or value < 1 or not float(value).is_integer(),
        "ratio": not finite or not 0 <= value < 1,
        "seconds": not finite or value <= 0,
        "none": True,
    }[meaning]
    if bad:
        yield Hit(("recommended_settings", "overlap"), f"overlap {value} is not a valid {meaning}")


@model_rule("overlap-divisor-integer", summary="a divisor overlap is written as an integer", strict_only=True,
            hint="write the divisor as an integer (4, not 4.0): the runtimes refuse a float divisor")
def divisor_integer(entry, ctx: ModelContext):
    value = entry.recommended_settings.overlap
    if entry.settings_semantics.overlap_semantics().meaning == "divisor" and type(value) is float \
            and value.is_integer():
        yield Hit(("recommended_settings", "overlap"), f"divisor {value} is written as a float; write "
                  f"{int(value)}")


@model_rule("overlap-keeps-overlap", summary="the recommended overlap keeps some overlap in every allowed runtime",
            strict_only=True, hint="use a value whose translation keeps overlap (the finding names the nearest), "
            "or the explicit no-overlap value (ratio 0, divisor 1)")
def keeps_overlap(entry, ctx: ModelContext):
    for runtime in entry.runtime.allowed:
        err = _resolution(entry, runtime)
        if isinstance(err, OverlapLostError):
            yield Hit(("recommended_settings", "overlap"), f"{err.message} ({err.why})", hint=err.hint)
        # other errors: the value and table rules report these


@model_rule("recommended-native-range", summary="recommended settings translate to values each allowed runtime "
            "accepts", strict_only=True, hint="use a value inside the runtime's accepted range (registry/settings.py "
            "NativeRange; the finding names the nearest valid values)")
def native_range(entry, ctx: ModelContext):
    for runtime in entry.runtime.allowed:
        resolved = _resolved(entry, runtime)
        for problem in resolved.problems if resolved else ():
            value = getattr(entry.recommended_settings, problem.name, None)
            if problem.provenance == "registry" and not _below_any_runtime(problem.name, value):
                yield Hit(("recommended_settings", problem.name), f"{problem.message}: {problem.why}",
                          hint=problem.hint)


def _resolved(entry, runtime: str) -> ResolvedSettings | None:
    resolution = _resolution(entry, runtime)
    return None if isinstance(resolution, Exception) else resolution  # errors: the rules above report them


_last: list = [None, {}]  # [the entry resolved last, runtime -> its resolution]: two rules ask for the same


def _resolution(entry, runtime: str) -> ResolvedSettings | SettingsError | ValueError:
    """`resolve_settings(entry, runtime)`, or the error it raised; once per entry and runtime."""
    if _last[0] is not entry:  # the entry is held, so `is` cannot match a new object at a reused address
        _last[:] = [entry, {}]
    cache = _last[1]
    if runtime not in cache:
        try:
            cache[runtime] = resolve_settings(entry, runtime)
        except (SettingsError, ValueError) as err:
            cache[runtime] = err
    return cache[runtime]


def _finite(value) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


@model_rule("overlap-native-matches-table", summary="meaning_by_runtime agrees with the settings table",
            strict_only=True,
            hint="write the runtime's native meaning from registry/settings.py (docs/DESIGN.md §4) for its pinned "
            "version")
def native_matches(entry, ctx: ModelContext):
    for runtime, word in entry.settings_semantics.overlap_semantics().meaning_by_runtime.items():
        if word not in OVERLAP_MEANINGS or runtime not in entry.runtime.allowed:
            continue
        native = native_overlap_meaning(entry, runtime)
        if native is not None and native != word:
            yield Hit(SEMANTICS + ("meaning_by_runtime", runtime),
                      f"{runtime} {pinned_version(entry, runtime) or ''} reads overlap as {native}, not {word}")


@model_rule("settings-table-covers", summary="every allowed runtime has settings semantics for the model",
            strict_only=True,
            hint="allow only runtimes that can run this architecture, or extend registry/settings.py with evidence")
def table_covers(entry, ctx: ModelContext):
    family = family_of(entry)
    for i, runtime in enumerate(entry.runtime.allowed):
        try:
            version = pinned_version(entry, runtime)
            row = settings_rule(runtime, family, version)
        except (SettingsError, ValueError):
            continue  # the runtime-pin rules report the pin itself
        if row is None:
            yield Hit(("runtime", "allowed", i), f"{runtime} {version or ''} has no settings semantics for "
                      f"architecture {entry.architecture!r}".replace("  ", " "))


@model_rule("recommended-settings-range", summary="recommended segment_size, batch_size and shifts are in range",
            hint="segment_size and batch_size >= 1, shifts >= 0")
def settings_range(entry, ctx: ModelContext):
    rec = entry.recommended_settings
    for name, low in _LOWEST.items():
        value = getattr(rec, name)
        if _below_any_runtime(name, value):
            yield Hit(("recommended_settings", name), f"{name} {value} is below {low}")


_LOWEST = {"segment_size": 1, "batch_size": 1, "shifts": 0}  # below these no runtime runs (whatever it translates)


def _below_any_runtime(name: str, value) -> bool:
    return name in _LOWEST and value is not None and value < _LOWEST[name]


@model_rule("recommended-bit-depth", summary="recommended bit_depth is 16, 24 or 32",
            hint="use 16 or 24 (integer PCM) or 32 (float WAV)")
def bit_depth(entry, ctx: ModelContext):
    value = entry.recommended_settings.bit_depth
    if value is not None and value not in (16, 24, 32):
        yield Hit(("recommended_settings", "bit_depth"), f"bit depth {value} is not 16, 24 or 32")
