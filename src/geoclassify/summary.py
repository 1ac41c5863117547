"""What a run did, counted: the :class:`Summary` every shell reports (the CLI's last line, a job's result)."""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Summary:
    """Counts and timing of one run; ``line()`` is what the CLI prints last.

    ``read`` counts the objects: features, or images when there is no feature layer (``unit``).
    """

    read: int
    classified: int
    outside: int = 0
    empty: int = 0
    errors: int = 0
    rows: int | None = None
    skipped: int = 0
    seconds: float = 0.0
    output: str | None = None
    unit: str = "features"
    #: Classified features whose chip held less valid raster than «min_coverage», left unlabelled.
    low_coverage: int = 0
    #: (class name, how many got it), in Classes order.
    per_class: tuple[tuple[str, int], ...] = ()

    @property
    def rate(self) -> float:
        return self.read / self.seconds if self.seconds > 0 else float("inf")

    def but(self, **changes: object) -> Summary:
        """The same counts with some fields changed (the time, the output)."""
        return replace(self, **changes)  # type: ignore[arg-type]

    def line(self) -> str:
        # Objects the extent left out were read too: they are counted with the rest, then set apart.
        text = f"{self.read + self.skipped} {self.unit} read"
        if self.skipped:
            text += f", {self.skipped} outside the extent left out"
        if self.unit == "images":
            text += f", {self.classified} classified, {self.errors} unreadable"
            text += f", {self.outside} without valid pixels"
        else:
            text += (
                f", {self.classified} classified, {self.outside} outside the raster or on NoData only, "
                f"{self.empty} with empty geometry"
            )
        if self.low_coverage:
            text += f", {self.low_coverage} with less valid raster than «min_coverage»"
        if self.rows is not None:
            text += f", {self.rows} rows (one per feature and image that covers it)"
        if self.per_class and self.classified:
            text += "; per class " + ", ".join(f"{name}: {n}" for name, n in self.per_class)
        text += f"; {self.seconds:.2f} s, {self.rate:,.0f} {self.unit}/s"
        return text + (f" -> {self.output}" if self.output else "")
