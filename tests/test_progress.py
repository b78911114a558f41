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


def test_off_a_terminal_a_long_run_prints_plain_lines(capsys, monkeypatch) -> None:
    import xrdmtl.progress as progress

    clock = iter(float(t) for t in range(0, 1000, 6))  # each call: 6 s later
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    with ProgressBar(10, "training") as bar:
        for _ in range(10):
            bar.update(1, info="loss 0.1")
    lines = capsys.readouterr().err.splitlines()
    # nothing in the first 10 s, then a line at every tenth, then the end
    assert lines[0] == "training: 2/10 (20%), 0:00:12 elapsed, ~0:00:48 left, loss 0.1"
    assert len(lines) == 10 and lines[-1].endswith("(done)"), lines
