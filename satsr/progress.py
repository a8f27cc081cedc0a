"""The progress bar of every long task (make-dataset, upscale, eval, train): one factory."""

from __future__ import annotations

from typing import Any

#: A middle column showing the task's speed in iterations per second.
SPEED = "{speed}"


def progress_bar(enabled: bool, *middle: str, title: str = "{task.description}",
                 timing: bool = True, transient: bool = False, console: Any = None) -> Any:
    """A rich Progress on stderr: title, bar, done/total, the `middle` text columns (rich
    format strings such as "tiles {task.fields[rate]}", or SPEED), then elapsed and remaining
    time unless `timing` is off. Disabled, it shows nothing.

    rich is imported here, on first use: importing satsr (and the CLI's start) stays fast.
    """
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class SpeedColumn(ProgressColumn):
        def render(self, task: Any) -> Text:
            s = task.speed
            return Text(f"{s:.2f} it/s" if s else "-- it/s", style="progress.data.speed")

    columns: list[Any] = [TextColumn(title), BarColumn(), MofNCompleteColumn()]
    columns += [SpeedColumn() if m == SPEED else TextColumn(m) for m in middle]
    if timing:
        columns += [TimeElapsedColumn(), TimeRemainingColumn()]
    return Progress(*columns, console=console or Console(stderr=True), transient=transient,
                    disable=not enabled)
