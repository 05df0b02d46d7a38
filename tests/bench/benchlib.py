"""What the benchmarks that run ansible-playbook share: finding it and the playbook."""

import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


class Failure(Exception):
    """A benchmark that cannot go on; the message says why, code is the exit status."""

    def __init__(self, message, code=1):
        super().__init__(message)
        self.code = code


def ansible_playbook():
    found = shutil.which("ansible-playbook")
    if found:
        return found
    beside = Path(sys.executable).parent / "ansible-playbook"
    if beside.exists():
        return str(beside)
    raise Failure("ansible-playbook not found (source tests/setup/env.sh)")


def playbook_path(name):
    path = Path(name)
    if not path.is_absolute() and not path.exists():
        path = REPO / name
    if not path.is_file():
        raise Failure("no playbook %s" % name)
    return str(path.resolve())


RESULTS = REPO / "docs" / "results.md"
RESULTS_HEAD = """# Measured figures

<!-- Written by the benchmarks in tests/bench/ (each with --record); one section per benchmark, replaced
     whole by its next recorded run. Do not edit by hand: run the benchmark again. -->

Each section says when, on which machine and at which commit it was measured. How to run each
benchmark and how to read it: `tests/bench/README.md`.
"""


def machine():
    """The machine a figure was measured on, as the notes name it: cores, memory and the CPU's model name."""
    import os
    model = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem_gb = int(open("/proc/meminfo").read().split()[1]) / 1024 / 1024
    except (OSError, ValueError, IndexError):
        mem_gb = 0
    return "%d cores, %.0f GB, %s" % (os.cpu_count() or 0, mem_gb, model)


def commit():
    import subprocess
    proc = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"], capture_output=True, text=True)
    return proc.stdout.strip() or "unknown"


def record(name, title, body, path=None, at=None):
    """Replace benchmark `name`'s section of docs/results.md with body (Markdown), stamped with the date,
    the machine and the commit (`at`: the commit measured, when it is not this checkout's). Other
    benchmarks' sections are kept as they are."""
    import datetime
    import re
    path = Path(path or RESULTS)
    text = path.read_text() if path.exists() else RESULTS_HEAD
    begin, end = "<!-- begin %s -->" % name, "<!-- end %s -->" % name
    stamp = "Measured %s on %s, at %s." % (datetime.date.today().isoformat(), machine(), at or commit())
    section = "%s\n## %s\n\n%s\n\n%s\n%s" % (begin, title, stamp, body.strip(), end)
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + section
    path.write_text(text.rstrip("\n") + "\n")
    return path


class _Tee:
    def __init__(self, stream):
        self.stream, self.parts = stream, []

    def write(self, text):
        self.parts.append(text)
        return self.stream.write(text)

    def flush(self):
        self.stream.flush()

    def __getattr__(self, name):
        return getattr(self.stream, name)


def run_recorded(name, title, main, argv=None):
    """Run a benchmark's main(argv); with --record among the arguments, what it printed goes into its
    section of docs/results.md once it succeeded (exit 0)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    wanted = "--record" in argv
    if "-h" in argv or "--help" in argv:
        print("(all benchmarks) --record: write what this run prints into docs/results.md when it succeeds")
    argv = [a for a in argv if a != "--record"]
    tee = _Tee(sys.stdout)
    sys.stdout = tee
    try:
        rc = main(argv)
    finally:
        sys.stdout = tee.stream
    if wanted and not rc:
        body = "Command: `python tests/bench/%s.py %s`\n\n```text\n%s\n```" % (
            name, " ".join(argv), "".join(tee.parts).rstrip())
        print("recorded in %s" % record(name, title, body))
    return rc
