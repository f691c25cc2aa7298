"""envmgr/stop_signals.py in this process, with real signals sent to it: what a signal becomes, and a cleanup
that a repeated Ctrl-C cannot cut in half. The CLI's own behaviour (background start, nohup, exit codes of a
real command) is tested through real CLI processes in test_cli_outcome.py and tests/worker/test_separate_cli.py."""

from __future__ import annotations

import os
import signal

import pytest

from envmgr import stop_signals
from envmgr.errors import Cancelled


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, "E_CANCELLED"), (signal.SIGTERM, "E_TERMINATED"),
                                       (signal.SIGHUP, "E_HANGUP")])
def test_each_stop_signal_is_raised_as_ctrl_c_and_exits_128_plus_its_number(host_stop_signals: None, sig: int,
                                                                             code: str) -> None:
    with pytest.raises(KeyboardInterrupt) as stop:  # every `except KeyboardInterrupt` cleanup runs for it
        os.kill(os.getpid(), sig)
    err = stop_signals.cancelled(stop.value)
    assert isinstance(err, Cancelled) and err.code == code and int(err.exit_code) == 128 + sig


def test_a_signal_during_a_held_cleanup_acts_after_it(host_stop_signals: None) -> None:
    done = []
    with pytest.raises(stop_signals.Stopped) as stop:
        with stop_signals.held():
            os.kill(os.getpid(), signal.SIGINT)
            done.append("cleanup")
    assert done == ["cleanup"] and stop.value.signum == signal.SIGINT


def test_a_signal_during_the_cleanup_of_a_stop_keeps_the_first_stop_s_error(host_stop_signals: None) -> None:
    with pytest.raises(Cancelled) as err:
        try:
            os.kill(os.getpid(), signal.SIGTERM)
        except KeyboardInterrupt as stop:
            raise stop_signals.cancelled(stop) from None
        finally:
            with stop_signals.held():
                os.kill(os.getpid(), signal.SIGINT)  # the user insists: the command is stopping already
    assert err.value.code == "E_TERMINATED"
    with pytest.raises(stop_signals.Stopped):  # the handlers are back
        os.kill(os.getpid(), signal.SIGINT)
