"""The standard load scenario: ivr-bridge and the baseline bridge, same run, same machine.

    .venv/bin/python benchmarks/scale.py                      # 50, 200, 400 calls x 30 s
    .venv/bin/python benchmarks/scale.py --calls 50 --duration 20 --write-readme

For each call count, each server runs in its own process against the probe recognizer (another
process) while this process generates the calls; the figures that count are the bridge's
ratios to the baseline measured in the same run (the machine is shared and noisy).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ivr_bridge.loadtest import LoadReport, LoadTestOptions, run_loadtest

BASELINE_CMD = [
    sys.executable,
    str(ROOT / "benchmarks" / "baseline_bridge.py"),
    "--port",
    "{port}",
    "--recognizer",
    "{recognizer}",
    "--events",
    "{events}",
]
ONE = {"IVR_BRIDGE_SERVER_WORKERS": "1"}
MARK_BEGIN = "<!-- scale-benchmark:begin -->"
MARK_END = "<!-- scale-benchmark:end -->"


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"


def table(rows: list[tuple[int, LoadReport, LoadReport]]) -> str:
    out = [
        f"Machine: {machine()}.",
        "",
        "| calls | server | CPU ms per call-s | ratio | RSS KB per call | ratio | "
        "frame->upstream p50/p99 ms | event p99 ms | failed |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for calls, bridge, base in rows:
        for rep in (base, bridge):
            cpu_ratio = rep.cpu_ms_per_call_second / max(base.cpu_ms_per_call_second, 1e-9)
            rss_ratio = rep.rss_kb_per_call / max(base.rss_kb_per_call, 1e-9)
            out.append(
                f"| {calls} | {rep.target} | {rep.cpu_ms_per_call_second:.2f} | "
                f"{cpu_ratio:.2f} | {rep.rss_kb_per_call:.0f} | {rss_ratio:.2f} | "
                f"{rep.upstream_delay_p50_ms:.0f} / {rep.upstream_delay_p99_ms:.0f} | "
                f"{rep.event_latency_p99_ms:.0f} | {rep.calls_failed} |"
            )
    return "\n".join(out)


def tree_cmd(src: str) -> list[str]:
    """``ivr-bridge serve`` from another source tree (that tree first on sys.path: with
    ``python -c`` the working directory would otherwise win over PYTHONPATH)."""
    launch = (
        f"import sys; sys.path.insert(0, {src!r}); "
        "from ivr_bridge.cli import main; sys.exit(main())"
    )
    return [sys.executable, "-c", launch, "serve", "--port", "{port}"]


def parse_compare(spec: str) -> tuple[str, str, dict[str, str]]:
    """``LABEL=DIR[,KEY=VALUE...]``: a label, a source tree and extra environment."""
    label, _, rest = spec.partition("=")
    src, *pairs = rest.split(",")
    env = dict(pair.split("=", 1) for pair in pairs)
    return label, str(Path(src).resolve()), env


async def run(
    calls: list[int],
    duration: float,
    ramp: float,
    compare: list[tuple[str, str, dict[str, str]]] | None = None,
) -> list[tuple[int, LoadReport, LoadReport]]:
    """Each call count: baseline, then ivr-bridge; ``compare`` adds bridges built from other
    source trees (label, directory holding ``ivr_bridge/``, extra environment), e.g. a
    checkout of main, for the before/after of one optimization in the same run. Those
    print to stderr only."""
    rows = []
    for n in calls:

        def say(line: str, n: int = n) -> None:
            print(f"\r[{n} calls] {line}", end="", file=sys.stderr, flush=True)

        base = await run_loadtest(
            LoadTestOptions(
                calls=n, duration_s=duration, ramp_s=ramp, server_cmd=BASELINE_CMD, label="baseline"
            ),
            progress=say,
        )
        # One worker process, like the baseline: the ratios compare the code, not core counts.
        bridge = await run_loadtest(
            LoadTestOptions(
                calls=n, duration_s=duration, ramp_s=ramp, label="ivr-bridge", server_env=ONE
            ),
            progress=say,
        )
        others = []
        for label, src, extra in compare or []:
            others.append(
                await run_loadtest(
                    LoadTestOptions(
                        calls=n,
                        duration_s=duration,
                        ramp_s=ramp,
                        label=label,
                        server_cmd=tree_cmd(src),
                        server_env={**ONE, **extra},
                    ),
                    progress=say,
                )
            )
        print(file=sys.stderr)
        print(
            base.format(), bridge.format(), *(o.format() for o in others), sep="\n", file=sys.stderr
        )
        rows.append((n, bridge, base))
    return rows


def write_readme(text: str) -> None:
    readme = ROOT / "README.md"
    body = readme.read_text()
    block = f"{MARK_BEGIN}\n{text}\n{MARK_END}"
    if MARK_BEGIN in body:
        body = re.sub(re.escape(MARK_BEGIN) + ".*?" + re.escape(MARK_END), block, body, flags=re.S)
    else:
        body += f"\n{block}\n"
    readme.write_text(body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, nargs="+", default=[50, 200, 400])
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--ramp", type=float, default=5.0)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--write-readme", action="store_true")
    parser.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="LABEL=DIR[,KEY=VALUE...]",
        help="also run the bridge from another source tree (e.g. `git archive main` unpacked),"
        " with extra environment (IVR_BRIDGE_SPEECHKIT_CHUNK_MS=100, say)",
    )
    args = parser.parse_args()
    compare = [parse_compare(spec) for spec in args.compare]
    rows = asyncio.run(run(args.calls, args.duration, args.ramp, compare))
    if args.json:
        print(
            json.dumps(
                [{"calls": n, "bridge": b.as_json(), "baseline": a.as_json()} for n, b, a in rows],
                indent=2,
            )
        )
    text = table(rows)
    print(text)
    if args.write_readme:
        write_readme(text)


if __name__ == "__main__":
    main()
