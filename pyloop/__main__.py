"""python -m pyloop <command>

    bench [args]   run the benchmark harness (benchmarks/run.py of a source checkout)
"""
import argparse
import os
import runpy
import sys


def _bench(rest):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    script = os.path.join(root, "benchmarks", "run.py")
    if not os.path.exists(script):
        sys.exit("pyloop bench needs a source checkout: benchmarks/run.py was not found "
                 f"next to the package ({root})")
    sys.argv = [script, *rest]
    runpy.run_path(script, run_name="__main__")


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m pyloop")
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("bench", help="run the benchmark harness", add_help=False)
    args, rest = ap.parse_known_args(argv)
    if args.command == "bench":
        _bench(rest)


if __name__ == "__main__":
    main()
