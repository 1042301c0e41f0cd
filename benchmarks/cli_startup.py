"""How long `medclip --help` and `medclip <recipe> --help` take, against a bare Python start, in fresh processes.

    .venv/bin/python benchmarks/cli_startup.py [--repeats 7]

Target: under 1 s each. Each command runs in a new process (as a user types it), the median of ``--repeats`` runs is
reported, and the bare interpreter start (``python -c pass``) is shown next to it since a loaded machine slows both
alike. The script also lists the heavy modules each command imported (none is the goal: torch alone takes seconds).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

HEAVY = ("torch", "numpy", "pandas", "scipy", "transformers", "monai", "timm", "matplotlib", "sklearn")
PROBE = """
import contextlib, io, json, sys
from medclip.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    try:
        main({argv!r})
    except SystemExit:
        pass
print(json.dumps(sorted({{name.split('.')[0] for name in sys.modules}} & set({heavy!r}))))
"""


def _seconds(command: list[str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    python = sys.executable
    baseline = _seconds([python, "-c", "pass"], args.repeats)
    print(f"{'command':<34} {'median s':>9} {'- bare start':>13}  heavy modules imported")
    print(f"{'python -c pass':<34} {baseline:>9.3f} {0.0:>13.3f}  -")
    for argv in (["--help"], ["pretrain", "--help"], ["zero-shot", "--help"], ["recipes", "list"]):
        seconds = _seconds([python, "-m", "medclip.cli", *argv], args.repeats)
        probe = subprocess.run(
            [python, "-c", PROBE.format(argv=argv, heavy=HEAVY)], check=True, capture_output=True, text=True
        )
        heavy = json.loads(probe.stdout.strip().splitlines()[-1])
        label = "medclip " + " ".join(argv)
        print(f"{label:<34} {seconds:>9.3f} {seconds - baseline:>13.3f}  {', '.join(heavy) or 'none'}")


if __name__ == "__main__":
    main()
