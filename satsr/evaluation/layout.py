"""Console layouts that adapt to the terminal width (the eval and models tables)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

# Deferred import: rich, on first render (this module is on the CLI's start-up path).


class FirstThatFits:
    """Render the first of several layouts whose natural width fits the console.

    rich shrinks a table that is too wide by cutting cells (`0.00…`) or folding words; a
    table of numbers is unreadable that way. Each candidate is measured at render time and
    the first that needs no wrapping is drawn; the last one is drawn whatever its width.
    """

    def __init__(self, layouts: Sequence[Any]) -> None:
        if not layouts:
            raise ValueError("FirstThatFits needs at least one layout")
        self.layouts = list(layouts)

    def choose(self, console: Any, options: Any) -> Any:
        """The layout that would be drawn at `options.max_width`."""
        from rich.measure import Measurement

        unbounded = options.update_width(1_000_000)  # rich clamps measures to the width
        for layout in self.layouts[:-1]:
            if Measurement.get(console, unbounded, layout).maximum <= options.max_width:
                return layout
        return self.layouts[-1]

    def __rich_console__(self, console: Any, options: Any) -> Iterator[Any]:
        yield self.choose(console, options)
