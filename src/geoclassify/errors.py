"""One exception tree for everything geoclassify reports to a user.

Every error a user can cause derives from :class:`GeoclassifyError`, so the CLI (and any service) can turn
it into one clear message without a traceback. Subclasses also derive from the builtin that fits, so
callers who think in builtins (``except ValueError``) still catch them.
"""

from __future__ import annotations


class GeoclassifyError(Exception):
    """Base of every error geoclassify raises on purpose."""


class ModelPackageError(GeoclassifyError, ValueError):
    """The model package (.dlpk, .emd, inline EMD) is unreadable, unsafe or inconsistent.

    ``key`` names the EMD key at fault when there is one, so a caller that knows where the user gave that key
    (``geoclassify package`` options) can say so.
    """

    def __init__(self, message: str = "", key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class ModelDefinitionError(ModelPackageError):
    """A key of the EMD is missing, has the wrong type or an impossible value."""


class UnsupportedModelError(ModelPackageError):
    """The model is well formed but uses a framework or model type this version cannot run."""


class ModelMismatchError(ModelPackageError):
    """The model file disagrees with its EMD (input size, band count, class count)."""


class UntrustedCodeError(ModelPackageError):
    """The package runs Python code and the user has not said they trust it."""


class MissingExtraError(GeoclassifyError, ImportError):
    """An optional dependency (an extra such as ``geoclassify[torch]``) is not installed."""


class DeviceError(GeoclassifyError, RuntimeError):
    """The processor asked for (``--processor-type GPU``, ``--gpu-id``) cannot be used on this machine."""


class ModelArgumentError(GeoclassifyError, ValueError):
    """An unknown model argument or a value that cannot be parsed."""


class InferenceError(GeoclassifyError, RuntimeError):
    """The model runtime failed while classifying a batch of chips."""

    @classmethod
    def out_of_retries(cls, tries: int, retries: int, why: object) -> InferenceError:
        """The error that ends a run once a batch has failed more than ``--retries`` times, wherever it ran."""
        return cls(f"a batch failed {tries} time{'s' * (tries > 1)} (--retries {retries}): {why}")


class RasterError(GeoclassifyError, OSError):
    """The raster cannot be opened or read, or does not fit the model."""


class FeatureSourceError(GeoclassifyError, OSError):
    """The feature layer cannot be opened or read."""


class CRSMismatchError(GeoclassifyError, ValueError):
    """The raster and the features cannot be put in one coordinate system."""


class OutputError(GeoclassifyError, OSError):
    """The output cannot be written where or how it was asked."""


class OutputExistsError(OutputError, FileExistsError):
    """The output exists and overwriting was not asked for."""


class JournalError(OutputError):
    """The journal of a resumable run cannot be written or read: the disk is full, a file is in its way, or it
    was damaged by hand."""


class SettingError(GeoclassifyError, ValueError):
    """An environment setting (extent, cell size, coordinate system, processing mode) is not usable."""


class RunCancelled(GeoclassifyError):
    """The caller asked the run to stop (a job cancelled through a service); nothing is written."""


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run whose results so far are saved; the message says how to resume."""


class GeoclassifyWarning(UserWarning):
    """Base of the warnings geoclassify emits; the CLI prints them as one line each."""


class NoOverlapWarning(GeoclassifyWarning):
    """No feature overlaps the raster, so nothing was classified."""


class BlackenIgnoredWarning(GeoclassifyWarning):
    """BlackenAroundFeature has no meaning for points and lines."""


class UnreferencedImagesWarning(GeoclassifyWarning):
    """Some images have no georeference, so their rows have no geometry."""


class DuplicateClassValueWarning(GeoclassifyWarning):
    """Two entries of Classes share a Value, so ClassValue cannot tell their features apart."""


class CellSizeWarning(GeoclassifyWarning):
    """The raster's cell size lies outside the model's training range (MinCellSize/MaxCellSize)."""


class InvalidGeometryWarning(GeoclassifyWarning):
    """Some features have geometries that cannot be placed on a grid (NaN or infinite coordinates)."""


class ExtentWarning(GeoclassifyWarning):
    """The extent misses every feature or image, or the raster, so nothing is classified."""


class DataLossWarning(GeoclassifyWarning):
    """Some of the user's data cannot be kept as it is: a field renamed, values cut or rounded by the output format,
    or attributes missing from the input (a shapefile without its .dbf)."""
