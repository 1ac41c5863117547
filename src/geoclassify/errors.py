"""One exception tree for everything geoclassify reports to a user.

Every error a user can cause derives from :class:`GeoclassifyError`, so the CLI (and any service) can turn
it into one clear message without a traceback. Subclasses also derive from the builtin that fits, so
callers who think in builtins (``except ValueError``) still catch them, and each has a stable ``code`` a
service can return and a client can branch on.

Messages speak of settings, not of one shell's words for them: a setting is written ``«cell_size»`` (the
:class:`~geoclassify.RunRequest` field), and :meth:`GeoclassifyError.render` puts each shell's words in its
place: ``--cell-size`` on the command line, ``context.cellSize`` on the REST API, ``cell_size=`` in Python
(what ``str()`` gives).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

#: A setting named in a message: ``«cell_size»``.
SETTING = re.compile(r"«(\w+)»")

#: How the Python API names each setting: its ``classify_objects`` keyword (flags with the value that asks).
PYTHON_WORDS = {
    "input_raster": "image",
    "input_features": "features",
    "output": "out",
    "output_layer": "out_layer",
    "class_label_field": "label_field",
    "model_arguments": "arguments",
    "output_crs": "out_crs",
    "overwrite": "overwrite=True",
    "resume": "resume=True",
    "trust_code": "trust_code=True",
    "recursive": "recursive=True",
}


def render(text: str, words: Mapping[str, str] | None = None) -> str:
    """``text`` with each «setting» in ``words`` (default: the Python API's keywords)."""
    vocabulary = PYTHON_WORDS if words is None else words
    return SETTING.sub(lambda m: vocabulary.get(m[1], m[1]), text)


class _NamesSettings(Exception):
    """A message that names settings: ``str()`` gives it in the Python API's words; ``f"{it}"`` and
    :attr:`message` keep the «setting» markers, so a message built around another one (a failed batch, a skipped
    image) still names settings in the words of the shell that finally shows it."""

    @property
    def message(self) -> str:
        """The message with its «setting» markers."""
        return super().__str__()

    def render(self, words: Mapping[str, str] | None = None) -> str:
        """The message with each setting in ``words`` (a shell's vocabulary), by default the Python API's."""
        return render(self.message, words)

    def __str__(self) -> str:
        return self.render()

    def __format__(self, spec: str) -> str:
        return format(self.message, spec)


class GeoclassifyError(_NamesSettings):
    """Base of every error geoclassify raises on purpose."""

    code = "error"


class ModelPackageError(GeoclassifyError, ValueError):
    """The model package (.dlpk, .emd, inline EMD) is unreadable, unsafe or inconsistent.

    ``key`` names the EMD key at fault when there is one, so a caller that knows where the user gave that key
    (``geoclassify package`` options) can say so.
    """

    code = "model-package"

    def __init__(self, message: str = "", key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class ModelDefinitionError(ModelPackageError):
    """A key of the EMD is missing, has the wrong type or an impossible value."""

    code = "model-definition"


class UnsupportedModelError(ModelPackageError):
    """The model is well formed but uses a framework or model type this version cannot run."""

    code = "unsupported-model"


class ModelMismatchError(ModelPackageError):
    """The model file disagrees with its EMD (input size, band count, class count)."""

    code = "model-mismatch"


class UntrustedCodeError(ModelPackageError):
    """The package runs Python code and the user has not said they trust it."""

    code = "untrusted-code"


class MissingExtraError(GeoclassifyError, ImportError):
    """An optional dependency (an extra such as ``geoclassify[torch]``) is not installed."""

    code = "missing-extra"


class DeviceError(GeoclassifyError, RuntimeError):
    """The processor asked for (``--processor-type GPU``, ``--gpu-id``) cannot be used on this machine."""

    code = "device"


class ModelArgumentError(GeoclassifyError, ValueError):
    """An unknown model argument or a value that cannot be parsed."""

    code = "model-argument"


class InferenceError(GeoclassifyError, RuntimeError):
    """The model runtime failed while classifying a batch of chips."""

    code = "inference"

    @classmethod
    def out_of_retries(cls, tries: int, retries: int, why: object) -> InferenceError:
        """The error that ends a run once a batch has failed more than ``--retries`` times, wherever it ran."""
        return cls(f"a batch failed {tries} time{'s' * (tries > 1)} («retries» {retries}): {why}")


class ClusterError(GeoclassifyError, OSError):
    """The Dask cluster cannot be reached, has no usable workers, or dropped the work."""

    code = "cluster"


class RasterError(GeoclassifyError, OSError):
    """The raster cannot be opened or read, or does not fit the model."""

    code = "raster"


class FeatureSourceError(GeoclassifyError, OSError):
    """The feature layer cannot be opened or read."""

    code = "features"


class FieldNotFoundError(FeatureSourceError):
    """A field named by the user (a truth or label field) is not in the layer; the message lists those there are."""

    code = "field-not-found"


class CRSMismatchError(GeoclassifyError, ValueError):
    """The raster and the features cannot be put in one coordinate system."""

    code = "crs-mismatch"


class OutputError(GeoclassifyError, OSError):
    """The output cannot be written where or how it was asked."""

    code = "output"


class OutputExistsError(OutputError, FileExistsError):
    """The output exists and overwriting was not asked for."""

    code = "output-exists"


class JournalError(OutputError):
    """The journal of a resumable run cannot be written or read: the disk is full, a file is in its way, or it
    was damaged by hand."""

    code = "journal"


class SettingError(GeoclassifyError, ValueError):
    """An environment setting (extent, cell size, coordinate system, processing mode) is not usable."""

    code = "setting"


class RunCancelled(GeoclassifyError):
    """The caller asked the run to stop (a job cancelled through a service); nothing is written."""

    code = "cancelled"


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run whose results so far are saved; the message says how to resume."""


class GeoclassifyWarning(_NamesSettings, UserWarning):
    """Base of the warnings geoclassify emits; the CLI prints them as one line each (settings as for errors)."""


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


class UnknownClassWarning(GeoclassifyWarning):
    """A layer being evaluated holds truth values or labels that are no class of the model."""


class NothingToEvaluateWarning(GeoclassifyWarning):
    """No feature has both a truth value and a label, so an evaluation has no figures."""
