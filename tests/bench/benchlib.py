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
