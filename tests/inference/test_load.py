"""A model loads once per process, without PyTorch for skops; row groups stream once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lakeforge import Workspace
from lakeforge.inference import Scorer, _load, resolve_model
from lakeforge.inference._source import DataUnit, FileUnit, UnitReader

# Load a skops-saved model in a fresh process: nothing imports PyTorch, it still scores,
# and PyTorch (when installed) imports afterwards as usual.
_LOAD_WITHOUT_TORCH = """
import importlib.util, sys
from lakeforge.inference._load import ModelRef, load_pyfunc
model = load_pyfunc(ModelRef("m", "1", None, "models:/m/1", sys.argv[1]))
assert "torch" not in sys.modules, "loading the model imported torch"
print(model.predict(model.input_example).tolist())
if importlib.util.find_spec("torch") is not None:
    import torch
"""


@pytest.mark.slow
def test_a_skops_model_loads_without_importing_torch(sws: Workspace) -> None:
    ref = resolve_model(sws, "ml.delay@champion")
    assert any(Path(ref.local_path).glob("*.skops")), "the test model is no longer skops-saved"
    done = subprocess.run(
        [sys.executable, "-c", _LOAD_WITHOUT_TORCH, ref.local_path],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().startswith("[")


def test_a_model_loads_once_per_process_and_is_shared_by_no_two_scorers(
    sws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = resolve_model(sws, "ml.delay@champion")
    loads: list[str] = []
    real = _load.load_pyfunc

    def counted(r: _load.ModelRef, **options: Any) -> Any:
        loads.append(r.local_path)
        return real(r, **options)

    monkeypatch.setattr(_load, "load_pyfunc", counted)

    def scorer() -> Scorer:
        return Scorer(ref, keep=None, project_dir=str(sws.project.directory), target="dev")

    first = scorer()
    model = first.model
    first.close()
    before = len(loads)
    second = scorer()
    assert second.model is model and len(loads) == before  # kept: not loaded again
    third = scorer()
    assert third.model is not model and len(loads) == before + 1  # second holds it
    second.close()
    third.close()


def test_slices_of_one_row_group_are_read_in_one_pass(tmp_path: Path) -> None:
    data = pa.table({"id": pa.array(range(1000), pa.int64()), "x": [i / 2 for i in range(1000)]})
    path = str(tmp_path / "one.parquet")
    pq.write_table(data, path, row_group_size=1000)
    schema = pa.schema([("id", pa.int64()), ("x", pa.float64())])
    units = [FileUnit(path, 0, s, min(300, 1000 - s), False, schema) for s in range(0, 1000, 300)]
    reader = UnitReader()
    for unit in units:
        assert reader.read(unit).equals(data.slice(unit.start, unit.rows))
        assert unit.read().equals(data.slice(unit.start, unit.rows))
    back = units[1].with_columns(["x"])  # an earlier slice, fewer columns: read again
    assert reader.read(back).equals(data.select(["x"]).slice(300, 300))
    shipped = reader.ship(units[2])
    assert isinstance(shipped, DataUnit) and shipped.read().equals(data.slice(600, 300))
    whole = FileUnit(path, 0, 0, 1000, True, schema)
    assert reader.ship(whole) is whole
