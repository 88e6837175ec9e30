"""Typed errors. Rules raise them without context; the engine and front ends add it."""


class ArchcalcError(Exception):
    """Any error caused by bad input. The CLI prints it and exits with code 2."""

    def __init__(self, message: str, *, where: str | None = None, fix: str | None = None):
        super().__init__(message)
        self.message = message
        self.where = where
        self.fix = fix

    def located(self, where: str) -> "ArchcalcError":
        """The same error, placed at `where` (a file, layer and line) unless already placed."""
        if self.where is None:
            self.where = where
        return self

    def __str__(self) -> str:
        text = f"{self.where}: {self.message}" if self.where else self.message
        if self.fix:
            text += f"\n  fix: {self.fix}"
        return text


class SpecError(ArchcalcError):
    """A YAML spec that cannot be read as an architecture."""


class ShapeError(ArchcalcError):
    """A layer whose input shapes make its output impossible."""


class UnboundDim(ShapeError):
    """A count needs the value of a symbolic dim that was not bound (`name`)."""

    def __init__(self, name: str):
        super().__init__(f"symbolic dim '{name}' has no value",
                         fix=f"bind it with --dim {name}=N (or --batch N for the batch dim)")
        self.name = name


class UnknownValue(ShapeError):
    """An op needs the value of an input (a target shape, slice bounds) that is computed
    from data at run time, or too large to follow: its output shape cannot be known.
    The engine reports the layer as unmodelled and goes on, rather than stopping."""


class GraphError(ArchcalcError):
    """A graph that is not a DAG, or references a tensor nobody produces."""


class ModelFileError(ArchcalcError):
    """A model file that cannot be read."""
