"""W_MEMORY_PEAK says the estimate and what to do, and the memory it compares against is this machine's."""

from __future__ import annotations

from pathlib import Path

from envmgr.preflight import rules
from envmgr.preflight.machine_memory import available_mib
from envmgr.sizes import human
from registry.capabilities import CAPABILITIES

VIPERX = "bs-roformer-viperx-1297"  # allowed on audio-separator, msst and stemsep-legacy


def test_warning_gives_the_estimate_and_names_the_streaming_runtime(registry) -> None:
    minutes, weights = 120, 600.0
    audio = rules.AudioFacts("live.flac", sample_rate=48000, channels=2, frames=minutes * 60 * 48000)
    (finding,) = rules.check_memory(audio, registry.get(VIPERX), "msst", 8192.0, weights)
    growth = CAPABILITIES["msst"].memory
    assert growth is not None
    estimate = growth.base_mib + weights + growth.mib_per_minute * minutes
    assert human(estimate * 2**20) in finding.message and "8.0 GiB available" in finding.message
    assert finding.input == "live.flac" and "120 min" in finding.message
    assert "--runtime stemsep-legacy" in finding.hint  # the model runs there, and it streams
    # Enough memory for the estimate: nothing to say.
    assert rules.check_memory(audio, registry.get(VIPERX), "msst", estimate + 1, weights) == []


def test_available_memory_is_read_from_the_kernel() -> None:
    meminfo = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    total_mib = int(meminfo["MemTotal"].split()[0]) / 1024
    available = available_mib()
    assert available is not None and 0 < available <= total_mib
