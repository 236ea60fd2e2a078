"""The MLServer side of ``bench/serving.py``: its venv, its model folder, its server.

MLServer 1.7.1 with ``mlserver-lightgbm`` runs from its own venv (``bench/.venv-mlserver``,
created on first use) and serves the very Booster file that MLflow logged for Lakeforge,
in process (``parallel_workers: 0``, one worker like the other sides), with or without
adaptive batching. Its clients send the Open Inference Protocol's one 2-D tensor.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from _common import BENCH_DIR

VENV = BENCH_DIR / ".venv-mlserver"
PYTHON = VENV / "bin" / "python"
# 1.7.1 breaks with uvloop 0.22 (its loop policy); httptools as on the Lakeforge side.
REQUIREMENTS = ["mlserver==1.7.1", "mlserver-lightgbm==1.7.1", "uvloop<0.22", "httptools"]
MODEL = "lgbm"
BATCHING = {"max_batch_size": 32, "max_batch_time": 0.002}
"""Adaptive batching: up to 32 requests, waiting at most 2 ms for them."""


def ensure_venv() -> Path:
    """MLServer's venv, created (a few minutes, once) if it is not there yet."""
    if PYTHON.exists() and _installed():
        return VENV
    print(f"  creating {VENV} (MLServer 1.7.1; takes minutes once)", flush=True)
    if VENV.exists():
        shutil.rmtree(VENV)
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(PYTHON), "-m", "pip", "install", "-q", *REQUIREMENTS], check=True)
    return VENV


def _installed() -> bool:
    probe = "import mlserver, mlserver_lightgbm, uvloop; print(mlserver.__version__)"
    done = subprocess.run([str(PYTHON), "-c", probe], capture_output=True, text=True)
    return done.returncode == 0 and done.stdout.strip() == "1.7.1"


def model_folder(
    booster_file: Path, folder: Path, ports: tuple[int, int, int], batching: bool
) -> Path:
    """An MLServer model repository serving ``booster_file`` on loopback: HTTP on the
    first of ``ports``, gRPC and metrics (unused) on the others."""
    if folder.exists():
        shutil.rmtree(folder)
    (folder / MODEL).mkdir(parents=True)
    shutil.copy(booster_file, folder / MODEL / "model.bst")
    settings: dict[str, Any] = {
        "host": "127.0.0.1",
        "http_port": ports[0],
        "grpc_port": ports[1],
        "metrics_port": ports[2],
        "parallel_workers": 0,  # in process, one worker
        "debug": False,
    }
    model: dict[str, Any] = {
        "name": MODEL,
        "implementation": "mlserver_lightgbm.LightGBMModel",
        "parameters": {"uri": "./model.bst", "version": "1"},
        **(BATCHING if batching else {}),
    }
    (folder / "settings.json").write_text(json.dumps(settings))
    (folder / MODEL / "model-settings.json").write_text(json.dumps(model))
    return folder


def command(folder: Path) -> list[str]:
    return [str(VENV / "bin" / "mlserver"), "start", str(folder)]


def tensor_payload(split: dict[str, Any]) -> dict[str, Any]:
    """A ``dataframe_split`` payload as V2's one ``[rows, n_features]`` FP64 tensor."""
    rows = split["dataframe_split"]["data"]
    return {
        "inputs": [
            {
                "name": "input-0",
                "datatype": "FP64",
                "shape": [len(rows), len(rows[0])],
                "data": [float(v) for row in rows for v in row],
            }
        ]
    }


def column_payload(split: dict[str, Any]) -> dict[str, Any]:
    """A ``dataframe_split`` payload as V2 tensors, one per column."""
    names, rows = split["dataframe_split"]["columns"], split["dataframe_split"]["data"]
    return {
        "inputs": [
            {"name": n, "datatype": "FP64", "shape": [len(rows)], "data": [r[i] for r in rows]}
            for i, n in enumerate(names)
        ]
    }
