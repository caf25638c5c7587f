"""`make run`'s restart policy: capped exponential backoff, reset once a process stayed up."""

from __future__ import annotations

from scripts.run_stack import Backoff, describe_exit


def test_restarts_wait_longer_each_exit_in_a_row_up_to_the_cap():
    backoff = Backoff(first=1, cap=30, reset_after=60)
    assert [backoff.delay(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]


def test_backoff_is_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("STACK_RESTART_DELAY_SECONDS", "0.5")
    monkeypatch.setenv("STACK_RESTART_MAX_DELAY_SECONDS", "4")
    monkeypatch.setenv("STACK_RESTART_RESET_SECONDS", "10")
    assert Backoff.from_env() == Backoff(first=0.5, cap=4, reset_after=10)


def test_an_exit_is_described_by_its_code_or_its_signal():
    assert describe_exit(3) == "exit code 3"
    assert describe_exit(-9) == "killed by SIGKILL"
    assert describe_exit(-15) == "killed by SIGTERM"
