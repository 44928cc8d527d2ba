"""Progress outside the Trainer: silent (and transparent) in CI, pipes and on ranks other than 0."""

import sys

from gen_common import progress


def test_track_is_transparent_and_quiet_when_not_interactive(monkeypatch, capsys):
    monkeypatch.setenv("CI", "true")
    assert not progress.interactive()
    assert list(progress.track(range(5), "work")) == [0, 1, 2, 3, 4]
    assert capsys.readouterr().err == ""


def test_interactive_needs_a_tty_and_rank_zero(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    monkeypatch.setenv("RANK", "0")
    assert progress.interactive()
    monkeypatch.setenv("RANK", "1")
    assert not progress.interactive()
