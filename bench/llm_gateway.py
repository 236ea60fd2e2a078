"""LLM gateway overhead: ``lakeforge serve``'s ``/v1`` and LiteLLM's proxy over one fake provider.

Usage: ``.venv/bin/python bench/llm_gateway.py [--quick] [--requests N] [--memory-requests N]
[--no-litellm] [--strict]``.

One fake OpenAI-compatible provider (:mod:`lakeforge.testing.fake_openai`, its own process)
answers three ways of calling it, side by side in one run:

- **direct**: the load generator calls the fake provider itself (the baseline);
- **lakeforge**: through an LLM endpoint of ``lakeforge serve`` (1 worker; every request
  spooled and logged to Delta, as in production);
- **litellm**: through LiteLLM's proxy (1 worker, no database), ``litellm[proxy]``
  pinned in ``bench/.venv-litellm`` which this script creates on first use.

The load generator is an asyncio httpx client in its own process: N workers (concurrency
1, 8 and 32), each sending a chat request and waiting for the whole answer, streamed and
not. It reports p50/p99 of the full-response time and, when streamed, of the time to the
first chunk (TTFT). Added latency is a gateway's percentile minus the direct one; the
ratio is LiteLLM's added p50 over Lakeforge's (> 1: Lakeforge adds less). The issue's
target: Lakeforge adds <= 1 ms p50 at concurrency 1 (not streamed).

Memory: each gateway's process tree RSS before, halfway through and after
``--memory-requests`` more requests (100,000; quick 10,000) at concurrency 8: it should
stay flat. Peak RSS is the sum of ``VmHWM`` over the gateway's processes.
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
import time
import urllib.request
from pathlib import Path
from typing import Any

from _common import BENCH_DIR, DATA_DIR, RESULT_MARK, machine

LITELLM_PIN = "litellm[proxy]==1.82.6"  # the last release before the compromised 1.82.7/1.82.8
LITELLM_VENV = BENCH_DIR / ".venv-litellm"
PROJECT = DATA_DIR / "llm_gateway"
ENDPOINT = """
llm_endpoints:
  bench:
    type: chat
    models:
      - {{name: fake, provider: openai, model: fake-model, base_url: "{url}", max_retries: 0}}
"""
LITELLM_CONFIG = """
model_list:
  - model_name: bench
    litellm_params: {{model: openai/fake-model, api_base: "{url}", api_key: sk-bench}}
litellm_settings: {{telemetry: false, drop_params: true}}
"""
CONCURRENCY = (1, 8, 32)
MESSAGE = "Summarize the quarterly report in three short sentences please"
ENV = os.environ | {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "LAKEFORGE_TARGET": "dev",
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no fetch of the price map at start
    "LITELLM_TELEMETRY": "False",
}


# -- servers ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Gateway:
    """A gateway server's process group on loopback, and its log."""

    def __init__(self, name: str, command: list[str], port: int, health: str) -> None:
        self.name, self.port, self.health = name, port, health
        self.url = f"http://127.0.0.1:{port}/v1"
        self.log = PROJECT / f"{name}.log"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=ENV,
                cwd=PROJECT,
                start_new_session=True,
            )

    def wait(self, timeout_s: float = 180) -> Gateway:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"{self.name} exited: {self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{self.port}{self.health}", timeout=2
                ):
                    return self
            except OSError:
                time.sleep(0.3)
        raise SystemExit(f"{self.name} not up in {timeout_s:.0f} s: {self.log.read_text()[-3000:]}")

    def rss_mib(self, field: str = "VmRSS") -> float:
        """The sum of ``field`` over the processes of the group."""
        total = 0
        for status in Path("/proc").glob("[0-9]*/status"):
            try:
                if os.getpgid(int(status.parent.name)) != self.process.pid:
                    continue
                text = status.read_text()
            except (OSError, ProcessLookupError):
                continue
            match = re.search(rf"{field}:\s+(\d+) kB", text)
            total += int(match.group(1)) if match else 0
        return total / 1024

    def cpu_s(self) -> float:
        """User plus system CPU seconds spent so far by the processes of the group."""
        ticks = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                if os.getpgid(int(stat.parent.name)) != self.process.pid:
                    continue
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, ProcessLookupError):
                continue
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
        return ticks / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=60)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def lakeforge_gateway(upstream: str) -> Gateway:
    import shutil

    import lakeforge

    if PROJECT.exists():
        shutil.rmtree(PROJECT)
    PROJECT.parent.mkdir(parents=True, exist_ok=True)
    folder = lakeforge.init_project("llm_gateway", PROJECT.parent)
    with (folder / "lakeforge.yaml").open("a") as handle:
        handle.write(ENDPOINT.format(url=upstream))
    port = free_port()
    command = [sys.executable, "-m", "lakeforge", "serve", "--port", str(port), "--workers", "1"]
    return Gateway("lakeforge", command, port, "/health")


def litellm_venv() -> Path:
    """``bench/.venv-litellm`` with the pinned proxy (created on first use: minutes)."""
    binary = LITELLM_VENV / "bin" / "litellm"
    if not binary.exists():
        print(f"creating {LITELLM_VENV} with {LITELLM_PIN} (once; a few minutes)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True)
        pip = [str(LITELLM_VENV / "bin" / "pip"), "install", "-q"]
        subprocess.run([*pip, LITELLM_PIN], check=True)
    version = subprocess.run(
        [str(LITELLM_VENV / "bin" / "python"), "-c", "import importlib.metadata as m;"
         "print(m.version('litellm'))"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    if version in ("1.82.7", "1.82.8"):
        raise SystemExit(f"{LITELLM_VENV} holds the compromised litellm {version}: delete it")
    return binary


def litellm_gateway(upstream: str) -> Gateway:
    binary = litellm_venv()
    config = PROJECT / "litellm.yaml"
    config.write_text(LITELLM_CONFIG.format(url=upstream))
    port = free_port()
    command = [str(binary), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
    return Gateway("litellm", [*command, "--num_workers", "1"], port, "/health/liveliness")


# -- load ---------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else 0.0


async def _load(
    url: str, model: str, requests: int, concurrency: int, stream: bool
) -> dict[str, Any]:
    """Send ``requests`` chat requests from ``concurrency`` workers; times in ms."""
    import httpx

    body = {"model": model, "messages": [{"role": "user", "content": MESSAGE}], "max_tokens": 32}
    if stream:
        body["stream"] = True
    payload = json.dumps(body).encode()
    headers = {"content-type": "application/json", "authorization": "Bearer sk-bench"}
    full: list[float] = []
    first: list[float] = []
    errors: list[str] = []
    left = requests
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:

        async def worker() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                started = time.perf_counter()
                if stream:
                    async with client.stream(
                        "POST", "/chat/completions", content=payload, headers=headers
                    ) as answer:
                        ttft = None
                        async for _ in answer.aiter_raw():
                            if ttft is None:
                                ttft = time.perf_counter() - started
                        status = answer.status_code
                    first.append((ttft or 0.0) * 1000)
                else:
                    answer = await client.post(
                        "/chat/completions", content=payload, headers=headers
                    )
                    status = answer.status_code
                full.append((time.perf_counter() - started) * 1000)
                if status != 200 and len(errors) < 5:
                    errors.append(f"HTTP {status}: {answer.text[:200] if not stream else ''}")

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    result = {
        "requests": len(full),
        "rps": len(full) / elapsed,
        "p50": percentile(full, 0.5),
        "p99": percentile(full, 0.99),
        "errors": errors,
    }
    if stream:
        result |= {"ttft_p50": percentile(first, 0.5), "ttft_p99": percentile(first, 0.99)}
    return result


def load(
    url: str, model: str, requests: int, concurrency: int, stream: bool, warmup: int = 0
) -> dict[str, Any]:
    """Run the load generator in its own process (untimed ``warmup`` requests first)."""
    spec = {
        "url": url,
        "model": model,
        "requests": requests,
        "concurrency": concurrency,
        "stream": stream,
        "warmup": warmup,
    }
    cmd = [sys.executable, __file__, "--loadgen", json.dumps(spec)]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False, env=ENV)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_MARK)]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"load generator failed (exit {proc.returncode}) against {url}")
    result: dict[str, Any] = json.loads(lines[-1][len(RESULT_MARK) :])
    if result["errors"]:
        raise SystemExit(f"{url} answered errors: {result['errors']}")
    return result


def loadgen(spec: dict[str, Any]) -> None:
    """The load generator's process: warm up, measure, print one result line."""
    args = (spec["url"], spec["model"])
    if spec["warmup"]:
        asyncio.run(_load(*args, spec["warmup"], spec["concurrency"], spec["stream"]))
    result = asyncio.run(_load(*args, spec["requests"], spec["concurrency"], spec["stream"]))
    print(RESULT_MARK + json.dumps(result), flush=True)


# -- the run ------------------------------------------------------------------------------


def latency(targets: dict[str, tuple[str, str]], requests: int) -> list[dict[str, Any]]:
    """Every (streamed, concurrency) case, each target in turn on the same case."""
    rows = []
    for stream in (False, True):
        for concurrency in CONCURRENCY:
            row: dict[str, Any] = {"stream": stream, "concurrency": concurrency}
            for name, (url, model) in targets.items():
                n = max(requests, 20 * concurrency)
                row[name] = load(url, model, n, concurrency, stream, warmup=max(50, concurrency))
            rows.append(row)
            print(f"  done: stream={stream} concurrency={concurrency}", flush=True)
    return rows


def memory(gateway: Gateway, model: str, requests: int) -> dict[str, Any]:
    """RSS before, halfway through and after ``requests`` requests at concurrency 8, and
    the gateway's CPU time per request (robust to a busy machine, unlike latency)."""
    samples = [gateway.rss_mib()]
    cpu = gateway.cpu_s()
    for _ in range(2):
        load(gateway.url, model, requests // 2, 8, False)
        time.sleep(0.5)
        samples.append(gateway.rss_mib())
    return {
        "rss_mib": samples,
        "requests": requests,
        "peak_mib": gateway.rss_mib("VmHWM"),
        "cpu_ms": (gateway.cpu_s() - cpu) * 1000 / requests,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="300 requests a case, 10k for memory")
    parser.add_argument("--requests", type=int, help="requests per case (default 2000)")
    parser.add_argument("--memory-requests", type=int, help="default 100,000 (quick 10,000)")
    parser.add_argument("--no-litellm", action="store_true", help="leave LiteLLM's proxy out")
    parser.add_argument("--strict", action="store_true", help="exit 1 when the target is missed")
    parser.add_argument("--loadgen", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.loadgen:
        loadgen(json.loads(args.loadgen))
        return
    requests = args.requests or (300 if args.quick else 2000)
    memory_requests = args.memory_requests or (10_000 if args.quick else 100_000)
    from lakeforge.testing.fake_openai import FakeOpenAI

    gateways: list[Gateway] = []
    with FakeOpenAI(subprocess=True, ttl_s=24 * 3600) as fake:
        try:
            lf = lakeforge_gateway(fake.url)
            gateways.append(lf)
            if not args.no_litellm:
                gateways.append(litellm_gateway(fake.url))
            for gateway in gateways:
                gateway.wait()
            targets = {"direct": (fake.url, "fake-model")}
            targets |= {g.name: (g.url, "bench") for g in gateways}
            load_avg = ", ".join(f"{x:.1f}" for x in os.getloadavg())
            print(f"{machine()}; {requests} requests a case; load average {load_avg}", flush=True)
            rows = latency(targets, requests)
            mem = {g.name: memory(g, "bench", memory_requests) for g in gateways}
        finally:
            for gateway in gateways:
                gateway.stop()
    ok = report(rows, mem, [g.name for g in gateways])
    if args.strict and not ok:
        raise SystemExit(1)


def report(rows: list[dict[str, Any]], mem: dict[str, Any], names: list[str]) -> bool:
    """Print the tables; return whether Lakeforge met the <= 1 ms p50 target."""
    print("\nLatency (ms): p50 / p99 of the full response; added = gateway minus direct")
    header = f"{'stream':<7}{'conc':>5} {'direct p50/p99':>16}"
    for name in names:
        header += f" {name + ' p50/p99':>20} {'added p50/p99':>16}"
    if "litellm" in names:
        header += f" {'ratio':>6}"
    print(header)
    print("-" * len(header))
    added_at_1 = None
    for row in rows:
        direct = row["direct"]
        line = f"{'yes' if row['stream'] else 'no':<7}{row['concurrency']:>5} "
        line += f"{direct['p50']:>7.2f} / {direct['p99']:>6.2f}"
        added: dict[str, float] = {}
        for name in names:
            side = row[name]
            added[name] = side["p50"] - direct["p50"]
            line += f" {side['p50']:>9.2f} / {side['p99']:>8.2f}"
            line += f" {added[name]:>7.2f} / {side['p99'] - direct['p99']:>6.2f}"
        if "litellm" in names:  # none when Lakeforge added nothing measurable (noise)
            ratio = added["litellm"] / added["lakeforge"] if added["lakeforge"] > 0.05 else None
            line += f" {ratio:>6.1f}" if ratio is not None else f" {'-':>6}"
        if not row["stream"] and row["concurrency"] == 1:
            added_at_1 = added["lakeforge"]
        print(line)
    print("\nStreamed: time to first chunk (ms), p50 / p99")
    for row in rows:
        if row["stream"]:
            cells = [f"{n} {row[n]['ttft_p50']:.2f} / {row[n]['ttft_p99']:.2f}" for n in row if
                     isinstance(row[n], dict)]  # fmt: skip
            print(f"  conc {row['concurrency']:>2}: " + "; ".join(cells))
    print("\nThroughput (requests/s), not streamed:")
    for row in rows:
        if not row["stream"]:
            cells = [f"{n} {row[n]['rps']:.0f}" for n in row if isinstance(row[n], dict)]
            print(f"  conc {row['concurrency']:>2}: " + ", ".join(cells))
    print("\nGateway CPU per request (ms, all its processes, not streamed, concurrency 8):")
    for name, m in mem.items():
        print(f"  {name:<10} {m['cpu_ms']:.2f}")
    print("\nMemory (process tree RSS, MiB): start / middle / end of the run, peak")
    for name, m in mem.items():
        start, middle, end = m["rss_mib"]
        print(
            f"  {name:<10} {start:>7.0f} / {middle:>7.0f} / {end:>7.0f}   peak {m['peak_mib']:.0f}"
            f"   ({m['requests']:,} requests; growth {end - start:+.0f} MiB, "
            f"second half {end - middle:+.0f})"
        )
    assert added_at_1 is not None
    ok = added_at_1 <= 1.0
    print(
        f"\nlakeforge added p50 at concurrency 1 = {added_at_1:.2f} ms (target <= 1 ms): "
        f"{'PASS' if ok else 'FAIL'}"
    )
    return ok


if __name__ == "__main__":
    main()
