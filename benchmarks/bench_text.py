#!/usr/bin/env python3
"""Issue 16, target 5: ``perturb_text`` / ``perturb_file`` against (tokenise + sample).

On ``--lines`` short lines (the Rotten Tomatoes reviews, repeated) and TEM at epsilon 10 on the
50,000 most frequent GloVe words, one process times, side by side and interleaved (medians of
``--repeats`` rounds, so load on the shared machine hits every variant alike):

- ``tokenise``: splitting every line with the word regex and joining the pieces again;
- ``sample``: ``mechanism.sample`` on the known word ids, in the batches ``perturb_text`` uses;
- ``perturb_text (before)``: the codec as it was before issue 16 (``tests/reference/text.py``,
  kept verbatim as the slow reference);
- ``perturb_text``: the current codec (same seed, same output: checked here);
- ``perturb_file``: the same lines from a file into a file.

Writes ``benchmarks/results/text.json`` and ``.md``.

    python benchmarks/bench_text.py                 # 60,000 lines, 3 rounds
    python benchmarks/bench_text.py --lines 10000 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "tests"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=60_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epsilon", type=float, default=10.0)
    args = parser.parse_args()

    import densitydp as dd
    from densitydp import text as current
    from reference import text as before

    space = dd.load_glove(top=50_000)
    mechanism = dd.TruncatedExponential(space, epsilon=args.epsilon)
    reviews = list(dd.load_dataset("rotten_tomatoes").texts)
    lines = [reviews[i % len(reviews)].replace("\n", " ") for i in range(args.lines)]
    regex = current._DEFAULT_REGEX
    codec = current.TextCodec(space.vocabulary)
    batches = [
        codec.encode_batch(lines[start : start + 4096])[1] for start in range(0, len(lines), 4096)
    ]
    n_tokens = sum(len(codec.encode(line).word_ids) for line in lines)
    n_bytes = sum(len(line.encode()) + 1 for line in lines)
    mechanism.sample(batches[0], rng=0)  # compile, fetch the rows
    dd.perturb_text(lines, mechanism, rng=0)

    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "lines.txt"
        target = Path(folder) / "out.txt"
        source.write_text("\n".join(lines) + "\n", encoding="utf-8")

        def tokenise() -> None:
            for line in lines:
                "".join(regex.split(line))

        def sample() -> None:
            generator = np.random.default_rng(0)
            for ids in batches:
                mechanism.sample(ids, rng=generator)

        variants: dict[str, Callable[[], object]] = {
            "tokenise": tokenise,
            "sample": sample,
            "perturb_text (before)": lambda: before.perturb_text(lines, mechanism, rng=0),
            "perturb_text": lambda: dd.perturb_text(lines, mechanism, rng=0),
            "perturb_file": lambda: dd.perturb_file(
                source, target, mechanism, rng=0, progress=False
            ),
        }
        same = dd.perturb_text(lines, mechanism, rng=0) == before.perturb_text(
            lines, mechanism, rng=0
        )
        times: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.repeats):
            for name, run in variants.items():
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
        file_same = (
            target.read_text(encoding="utf-8")
            == "\n".join(dd.perturb_text(lines, mechanism, rng=0)) + "\n"
        )

    median = {name: float(np.median(values)) for name, values in times.items()}
    base = median["tokenise"] + median["sample"]
    command = "python benchmarks/bench_text.py " + " ".join(sys.argv[1:])
    result = {
        "command": command.strip(),
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": f"{platform.machine()}, {len(__import__('os').sched_getaffinity(0))} CPUs",
        "lines": args.lines,
        "bytes": n_bytes,
        "word_tokens": n_tokens,
        "mechanism": repr(mechanism),
        "repeats": args.repeats,
        "seconds": times,
        "median_seconds": median,
        "tokenise_plus_sample": base,
        "ratio_to_tokenise_plus_sample": {name: median[name] / base for name in median},
        "same_output_as_before": bool(same),
        "file_same_as_text": bool(file_same),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "text.json").write_text(json.dumps(result, indent=2) + "\n")
    rows = [
        f"| {name} | {median[name]:.3f} | {median[name] / base:.2f} | "
        f"{n_tokens / median[name] / 1e6:.2f} |"
        for name in variants
    ]
    table = "\n".join(
        [
            f"Text end to end (issue 16, target 5): `{result['command']}` "
            f"({result['when']}, {result['machine']}, shared machine; medians of "
            f"{args.repeats} interleaved rounds in one process)",
            "",
            f"{args.lines:,} lines ({n_bytes / 1e6:.1f} MB, {n_tokens:,} word tokens) of Rotten "
            f"Tomatoes reviews, {result['mechanism']} on the 50,000 most frequent GloVe words.",
            "",
            "| variant | seconds | x (tokenise + sample) | M tokens/s |",
            "|---|---:|---:|---:|",
            *rows,
            "",
            f"tokenise + sample: {base:.3f} s. perturb_text before / after: "
            f"{median['perturb_text (before)'] / median['perturb_text']:.2f}x faster. "
            f"Same output as before for the same seed: {same}; the file's output equals "
            f"perturb_text's: {file_same}.",
            "",
        ]
    )
    (RESULTS / "text.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
