"""Registered models pinned, downloaded and loaded for scoring, each at most once per process.

:func:`resolve_model` pins ``models:/name@alias`` to a version, downloads its artifacts
once (cached by name, version and source) and proves the model loads, so a model that
cannot load fails before any data is read. The loaded model is kept: a scorer in the same
process takes it (:func:`take_model`) instead of loading it again, and gives it back when
it closes (:func:`give_back`), so a second run, or the next micro-batch, loads nothing.

Loading a scikit-learn or LightGBM model saved with skops imports ``skops.io``, which
lists every scikit-learn estimator and so imports every scikit-learn module; with PyTorch
installed, one of them imports it (seconds and about 0.45 GB per process) although
nothing uses it. ``skops.io`` is imported with PyTorch kept out (:func:`import_skops`).
"""

from __future__ import annotations

import hashlib
import importlib.abc
import re
import shutil
import sys
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lakeforge.errors import LakeforgeError

if TYPE_CHECKING:
    from importlib.machinery import ModuleSpec
    from types import ModuleType

    from lakeforge._workspace import Workspace

URI = re.compile(r"^(?:models:/)?(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[A-Za-z0-9_-]+))$")
#: Loaded models kept per process for the next scorer of the same version.
KEPT_MODELS = 2
#: Imported by the scoring fork server before ``skops.io`` (see :func:`preload_modules`).
SKOPS_PRELOAD = "lakeforge.inference._skops"


@dataclass(frozen=True)
class ModelRef:
    """A registered model version pinned for one scoring run."""

    name: str  # registered name as the registry spells it
    version: str  # pinned version
    alias: str | None  # the alias the URI named (None for a version URI)
    uri: str  # 'models:/<name>/<version>' (pinned)
    local_path: str  # downloaded model directory, loadable in any process

    @property
    def label(self) -> str:
        """``name vN @alias`` for logs and summaries."""
        return f"{self.name} v{self.version}" + (f" @{self.alias}" if self.alias else "")


def resolve_model(ws: Workspace, model_uri: str) -> ModelRef:
    """Pin ``model_uri`` (``models:/name@alias``, ``models:/name/3``, ``name@alias``,
    ``name/3``) to a version, download it once and load it once per process.

    A model that cannot load raises :class:`LakeforgeError` with its reason.
    """
    match = URI.fullmatch(model_uri.strip())
    if match is None:
        raise LakeforgeError(
            f"model URI {model_uri!r} is not models:/NAME/VERSION or models:/NAME@ALIAS "
            "(the models:/ prefix is optional, e.g. dev.ml.delay@champion)"
        )
    ref = match["name"] + (f"/{match['version']}" if match["version"] else f"@{match['alias']}")
    version = ws.models.resolve(ref)
    name, number = str(version.name), str(version.version)
    local = _download(ws, name, number, f"{version.source}|{version.creation_timestamp}")
    pinned = ModelRef(name, number, match["alias"], f"models:/{name}/{number}", local)
    if local not in _imports:  # not loaded in this process yet: prove it loads, keep it
        give_back(pinned, load_pyfunc(pinned, warn=True))
    return pinned


def _download(ws: Workspace, name: str, version: str, source: str) -> str:
    """The model's artifacts in a local folder, downloaded on first use (atomic rename)."""
    import mlflow

    from lakeforge.tracking import use_target

    digest = hashlib.sha256(source.encode()).hexdigest()[:12]
    if ws.target.is_local:
        cache = Path(ws.target.path(".cache", "models"))
    else:
        cache = Path(tempfile.gettempdir()) / "lakeforge-models" / ws.project.name / ws.target.name
    folder = cache / name / f"{version}-{digest}"
    if folder.is_dir():
        return str(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=folder.parent))
    try:
        with use_target(ws.target):
            mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{name}/{version}", dst_path=str(staging)
            )
        try:
            staging.rename(folder)
        except OSError:  # another process cached it first
            if not folder.is_dir():
                raise
    except Exception as exc:
        raise LakeforgeError(
            f"model {name} v{version} could not be downloaded: {type(exc).__name__}: {exc}"
        ) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return str(folder)


def load_pyfunc(ref: ModelRef, *, warn: bool = False) -> Any:
    """``ref``'s pyfunc model, freshly loaded; a model that cannot load raises with its
    reason. ``warn``: MLflow's warnings on requirements this environment does not meet
    (checked once, by :func:`resolve_model`: scanning the installed packages takes
    seconds, and every worker shares the driver's environment)."""
    import mlflow

    before = set(sys.modules)
    try:
        if _uses_skops(ref.local_path):
            import_skops()
        model = mlflow.pyfunc.load_model(ref.local_path, suppress_warnings=not warn)
    except Exception as exc:
        raise LakeforgeError(
            f"model {ref.name} v{ref.version} cannot load: {type(exc).__name__}: {exc}"
        ) from None
    loader = model.metadata.flavors.get("python_function", {}).get("loader_module")
    new = {name.partition(".")[0] for name in set(sys.modules) - before}
    _imports[ref.local_path] = sorted(new | ({loader} if loader else set()))
    return model


# Packages loading each model imported (when it was the first to need them): what a
# worker process can import before it forks, saving each worker the time.
_imports: dict[str, list[str]] = {}
# Loaded models no scorer holds, by local path, least recently used first.
_kept: OrderedDict[str, Any] = OrderedDict()
_lock = threading.Lock()


def take_model(ref: ModelRef) -> Any:
    """``ref``'s model for one scorer: one this process loaded before, else a fresh one."""
    with _lock:
        model = _kept.pop(ref.local_path, None)
    return model if model is not None else load_pyfunc(ref)


def give_back(ref: ModelRef, model: Any) -> None:
    """Keep ``model`` for the next scorer of ``ref`` (the least recently used go)."""
    with _lock:
        _kept[ref.local_path] = model
        _kept.move_to_end(ref.local_path)
        while len(_kept) > KEPT_MODELS:
            _kept.popitem(last=False)


def preload_modules(ref: ModelRef) -> list[str]:
    """Modules worth importing once in a fork server for workers that load ``ref``."""
    first = ["lakeforge.inference._model", "lakeforge.features", "mlflow.pyfunc"]
    if _uses_skops(ref.local_path):
        first.append(SKOPS_PRELOAD)
    return [*first, *_imports.get(ref.local_path, [])]


def _uses_skops(path: str) -> bool:
    """Whether the model in ``path`` is saved with skops (its flavor loads ``skops.io``)."""
    return any(Path(path).glob("*.skops"))


def import_skops() -> None:
    """Import ``skops.io`` with PyTorch kept out, unless it is imported already.

    Only PyTorch's absence is seen while ``skops.io`` imports (scikit-learn's listing of
    its estimators passes over what fails to import); PyTorch imports as usual afterwards.
    The import hook is process-wide for that moment: another thread importing PyTorch
    then would fail.
    """
    if "skops.io" in sys.modules or "torch" in sys.modules:
        return
    with _kept_out(("torch",)):
        import skops.io  # noqa: F401


class _KeptOut(importlib.abc.MetaPathFinder):
    """Fails the import of ``packages`` (their importers treat them as not installed)."""

    def __init__(self, packages: Sequence[str]) -> None:
        self.packages = set(packages)

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname.partition(".")[0] in self.packages:
            raise ModuleNotFoundError(f"{fullname} is not needed here", name=fullname)
        return None


@contextmanager
def _kept_out(packages: Sequence[str]) -> Iterator[None]:
    """Imports of ``packages`` fail inside the block (and work again after it)."""
    finder = _KeptOut(packages)
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
