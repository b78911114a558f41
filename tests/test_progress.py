"""The one progress bar: silent when disabled or off a terminal, a context manager either way."""

from __future__ import annotations

from xrdmtl.progress import ProgressBar


def test_a_disabled_bar_accepts_every_call() -> None:
    with ProgressBar(10, "work", enabled=False) as bar:
        bar.update(3, info="loss 0.1")
        bar.update(completed=5, description="other work")
        bar.advance(2)
    bar.close()  # closing twice is harmless


def test_off_a_terminal_the_bar_stays_silent(capsys) -> None:  # pytest captures: stderr is no tty
    with ProgressBar(4, "work") as bar:
        bar.advance(4)
    assert capsys.readouterr().err == ""
