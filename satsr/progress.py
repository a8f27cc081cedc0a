"""The progress bar of every long task (make-dataset, upscale, eval, train): one factory."""

from __future__ import annotations

import sys
import time
from typing import Any

#: A middle column showing the task's speed in iterations per second.
SPEED = "{speed}"
#: Seconds between the progress lines printed where stderr is not a terminal (a log file, a
#: pipe, a batch job), so a long run is seen to progress; None: no lines (the library's
#: default; the CLI sets it, see satsr.cli.app.main).
LINE_EVERY: float | None = None


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

    class LineProgress(Progress):
        """No bar: one `satsr: progress:` line on stderr every LINE_EVERY seconds."""

        def __init__(self, every: float, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._every, self._last = every, time.monotonic()

        def update(self, task_id: Any, *args: Any, **kwargs: Any) -> None:
            super().update(task_id, *args, **kwargs)
            self._tick(task_id)

        def advance(self, task_id: Any, advance: float = 1) -> None:
            super().advance(task_id, advance)
            self._tick(task_id)

        def _tick(self, task_id: Any) -> None:
            now = time.monotonic()
            if now - self._last < self._every:
                return
            self._last = now
            task = self._tasks[task_id]
            total = f"/{task.total:g} ({task.completed / task.total:.0%})" if task.total else ""
            desc = " ".join(str(task.description).split())
            line = f"satsr: progress: {task.completed:g}{total}, {task.elapsed or 0:.0f} s"
            print(line + (f" {desc}" if desc else ""), file=sys.stderr, flush=True)

    columns: list[Any] = [TextColumn(title), BarColumn(), MofNCompleteColumn()]
    columns += [SpeedColumn() if m == SPEED else TextColumn(m) for m in middle]
    if timing:
        columns += [TimeElapsedColumn(), TimeRemainingColumn()]
    if LINE_EVERY is not None:
        return LineProgress(LINE_EVERY, *columns, console=console or Console(stderr=True),
                            disable=True)
    return Progress(*columns, console=console or Console(stderr=True), transient=transient,
                    disable=not enabled)
