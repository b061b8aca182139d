"""Every benchmark in one command, in under 10 minutes on 2 cores, each printing its table(s).

    make bench          # or: .venv/bin/python -m bench.run_all [--only NAME ...]

Needs PostgreSQL and Redis as the service tests do (bench/stack.py) and `wrk` (apt-get install wrk). The
benchmarks run with smaller counts here than their own defaults, to fit the time: run one alone
(`python -m bench.NAME`, defaults as the issue asks: 100 dispatches per broker, 20 jobs for memory, ...)
for the figures in the README. A failing benchmark is reported and the others still run.
"""

import argparse
import importlib
import sys
import time
import traceback

from bench.report import console

# name -> arguments that fit the 10-minute budget
PLAN: dict[str, list[str]] = {
    "train_throughput": ["--rounds", "3"],
    "optimizer_kernels": ["--rounds", "5"],
    "service_throughput": ["--rounds", "3", "--seconds", "0.8", "--startup-jobs", "5"],
    "whole_job": ["--rounds", "1", "--epochs", "10", "--template", "mlp", "rnn-sine", "gan"],
    "time_to_accuracy": ["--rounds", "3"],
    "dispatch_latency": ["--jobs", "10"],
    "post_latency": ["--posts", "5"],
    "back_to_back": ["--jobs", "10"],
    "checkpoint_policy": ["--rounds", "1", "--epochs", "10"],
    "api_load": ["--seconds", "3"],
    "scale": ["--requests", "10"],
    "worker_memory": ["--jobs", "10"],
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=list(PLAN), nargs="+", default=list(PLAN))
    args = parser.parse_args(argv)
    failed, started = [], time.monotonic()
    for name in args.only:
        console.rule(f"bench.{name} {' '.join(PLAN[name])}")
        began = time.monotonic()
        try:
            importlib.import_module(f"bench.{name}").main(PLAN[name])
        except SystemExit as error:  # gpu_check-style exits: 0 is success
            if error.code:
                failed.append(name)
        except Exception:
            failed.append(name)
            console.print(f"[red]bench.{name} failed[/]\n{traceback.format_exc()}")
        console.print(f"bench.{name}: {time.monotonic() - began:.0f} s")
    console.rule(
        f"all done in {time.monotonic() - started:.0f} s" + (f"; failed: {failed}" if failed else "")
    )
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
