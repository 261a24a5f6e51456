"""`segrefine-edge bench`: invoke latency per model, runtime, delegate and thread count."""

from __future__ import annotations

import json
from itertools import product
from pathlib import Path

import click

from segrefine_edge.backend import DELEGATES, RUNTIMES, open_backend
from segrefine_edge.bench import LatencyResult, measure
from segrefine_edge.cli.options import resolve_model_path
from segrefine_edge.sinks import check_output_file


def _table(results: list[LatencyResult]) -> str:
    header = f"{'model':<48}{'runtime':<16}{'delegate':<9}{'thr':>4}{'median ms':>11}{'p95 ms':>9}"
    rows = [f"{r.model[:47]:<48}{r.runtime:<16}{r.delegate:<9}{r.threads:>4}{r.median_ms:>11.2f}{r.p95_ms:>9.2f}"
            for r in results]
    return "\n".join([header, *rows])


@click.command()
@click.argument("models", nargs=-1)
@click.option("--vs", "versus", default=None, help="A second model timed in the same run, interleaved; prints the ratio.")
@click.option("--runtime", "runtimes", multiple=True, type=click.Choice(("auto", *RUNTIMES)),
              help="Runtime(s) to measure (repeatable; default auto).")
@click.option("--delegate", "delegates", multiple=True, type=click.Choice(DELEGATES),
              help="Delegate(s) to measure (repeatable; default auto).")
@click.option("--threads", "thread_counts", multiple=True, type=click.IntRange(1, 64),
              help="Thread count(s) to measure (repeatable; default 2).")
@click.option("--warmup", type=click.IntRange(0), default=5, show_default=True)
@click.option("--runs", type=click.IntRange(1), default=50, show_default=True)
@click.option("--json", "json_path", default=None, help="Write the results (and the ratio) as JSON.")
def bench(models, versus, runtimes, delegates, thread_counts, warmup, runs, json_path) -> None:
    """Time MODELS' invoke after warm-up (default: the shipped model): median and p95 in ms.

    With --vs OTHER, each setting times MODEL and OTHER alternately in one run and prints
    OTHER's median over MODEL's (above 1: MODEL is faster).
    """
    paths = list(models) or [resolve_model_path(None)]
    if json_path:
        check_output_file(json_path, "the bench results")
    if versus and len(paths) != 1:
        raise click.UsageError("--vs compares exactly one MODEL with one other")
    results: list[LatencyResult] = []
    ratios = []
    for runtime, delegate, threads in product(runtimes or ("auto",), delegates or ("auto",), thread_counts or (2,)):
        if versus:
            pair = [open_backend(p, runtime, delegate, threads) for p in (paths[0], versus)]
            mine, theirs = measure(pair, warmup, runs)
            results += [mine, theirs]
            ratios.append({"model": mine.model, "vs": theirs.model, "runtime": mine.runtime, "delegate": mine.delegate,
                           "threads": threads, "ratio": theirs.median_ms / mine.median_ms})
        else:
            for path in paths:
                results += measure([open_backend(path, runtime, delegate, threads)], warmup, runs)
    click.echo(_table(results))
    for r in ratios:
        click.echo(f"{r['vs']} / {r['model']} median ratio ({r['runtime']}/{r['delegate']}/{r['threads']} threads): "
                   f"{r['ratio']:.2f}x")
    if json_path:
        Path(json_path).write_text(json.dumps({"results": [r.to_json() for r in results], "ratios": ratios}, indent=1))
