"""One owner of the cyclic collector's freeze (relocate/gcfreeze.py, issue 18): a
transfer's block does not hand back what the CLI froze when the process exits after the
command, and does hand it back in a process that runs many moves (tests, a library).
Each case in a fresh interpreter: the freeze is process-wide state."""

from __future__ import annotations

import json
import subprocess
import sys

_CASE = """
import gc, json, sys
from relocate import gcfreeze
if sys.argv[1] == "owner":
    gcfreeze.own_process()
gcfreeze.freeze()  # the CLI's, after a command's imports
before = gc.get_freeze_count()
with gcfreeze.frozen():  # a transfer's
    inside = gc.get_freeze_count()
    with gcfreeze.paused():
        paused = gc.isenabled()
print(json.dumps({"before": before, "inside": inside, "after": gc.get_freeze_count(), "paused": paused,
                  "enabled": gc.isenabled()}))
"""


def _run(mode: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", _CASE, mode], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_the_entry_points_freeze_is_not_undone_by_a_transfer() -> None:
    got = _run("owner")
    assert got["before"] > 1000, "the modules were frozen"
    assert got["inside"] >= got["before"] and got["after"] >= got["before"]
    assert got["paused"] is False and got["enabled"] is True


def test_a_process_that_lives_on_gets_its_objects_back() -> None:
    got = _run("library")
    assert got["before"] == 0, "only the process's own entry point freezes for the process's life"
    assert got["inside"] > 1000, "a transfer still freezes what is alive while it runs"
    assert got["after"] == 0, "frozen garbage is never collected: a long-lived process must not keep it"


def test_the_cli_entry_point_owns_the_freeze() -> None:
    # main() with no argv is the process's entry point (it leaves through os._exit);
    # with an argv (tests, a library caller) it is not.
    code = ("import atexit, sys\n"
            "from relocate import gcfreeze\n"
            "from relocate.cli import main\n"
            "atexit.register(lambda: print('owned', gcfreeze._state['for_life']))\n"
            "if sys.argv[1] == 'argv':\n"
            "    try:\n"
            "        main(['--version'])\n"
            "    except SystemExit:\n"
            "        pass\n"
            "else:\n"
            "    sys.argv = ['relocate', '--version']\n"
            "    main()\n")
    for mode, owned in (("entry", "True"), ("argv", "False")):
        proc = subprocess.run([sys.executable, "-c", code, mode], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip().splitlines()[-1] == f"owned {owned}", (mode, proc.stdout)
