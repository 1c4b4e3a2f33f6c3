"""python -m pyloop <command>

    run SCRIPT [args]      run an asyncio program on pyloop, unchanged: its
    run -m MODULE [args]   asyncio.run(), new_event_loop() and get_event_loop()
                           give pyloop loops
    bench [args]           run the benchmark harness (benchmarks/run.py of a source checkout)
    --version              pyloop's version and the libuv it runs on
    monitor ADDRESS        a live view of a process that serves its loop's figures on the Unix
                           socket ADDRESS (pyloop.monitor.serve(ADDRESS))
"""
import argparse
import os
import runpy
import sys
import warnings


def _bench(rest):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    script = os.path.join(root, "benchmarks", "run.py")
    if not os.path.exists(script):
        sys.exit("pyloop bench needs a source checkout: benchmarks/run.py was not found "
                 f"next to the package ({root})")
    sys.argv = [script, *rest]
    runpy.run_path(script, run_name="__main__")


def _install_policy():
    # The one hook that reaches every loop a program makes without changing
    # it: asyncio.run(), Runner, new_event_loop() and get_event_loop() all ask
    # the policy. Policies are deprecated from 3.14 on (still honoured there);
    # the program did not ask for one, so it is not warned about ours.
    import asyncio

    import pyloop
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        asyncio.set_event_loop_policy(pyloop.EventLoopPolicy())


def _run(args):
    _install_policy()
    if args.module:
        # As `python -m MODULE`: the current directory leads sys.path.
        sys.argv = [args.target, *args.args]
        sys.path.insert(0, os.getcwd())
        runpy.run_module(args.target, run_name="__main__", alter_sys=True)
    else:
        # As `python SCRIPT`: the script's directory leads sys.path, and the
        # script is sys.modules["__main__"] while it runs.
        script = args.target
        if not os.path.exists(script):
            sys.exit(f"python -m pyloop run: can't open file {script!r}: no such file")
        sys.argv = [script, *args.args]
        sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
        runpy.run_path(script, run_name="__main__")


def _version():
    import pyloop
    return (f"pyloop {pyloop.__version__} on libuv {pyloop.libuv_version()} "
            f"({pyloop._core.libuv_linkage})")


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m pyloop")
    ap.add_argument("--version", action="version", version=_version())
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("bench", help="run the benchmark harness", add_help=False)
    run = sub.add_parser("run", help="run an asyncio program on pyloop",
                         description="Run SCRIPT (or -m MODULE) with pyloop as the event "
                                     "loop that asyncio creates; ARGS become sys.argv[1:].")
    run.add_argument("-m", dest="module", action="store_true",
                     help="TARGET is a module name, run as python -m does")
    run.add_argument("target", metavar="SCRIPT|MODULE")
    run.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS")
    mon = sub.add_parser("monitor", help="watch a monitored pyloop process",
                         description="Show a refreshing view of the loop of a process that "
                                     "called pyloop.monitor.serve(ADDRESS).")
    mon.add_argument("address", metavar="ADDRESS", help="the Unix socket the process serves")
    mon.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes")
    mon.add_argument("--count", type=int, default=None,
                     help="stop after this many refreshes (default: until Ctrl-C)")
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["bench"]:
        # Every option after "bench" is the harness's own, --help included.
        return _bench(argv[1:])
    args = ap.parse_args(argv)
    if args.command == "run":
        _run(args)
    elif args.command == "monitor":
        from pyloop import monitor
        try:
            monitor.watch(args.address, interval=args.interval, count=args.count)
        except (FileNotFoundError, ConnectionError) as exc:
            sys.exit(f"python -m pyloop monitor: cannot reach {args.address}: {exc}")


if __name__ == "__main__":
    main()
