"""ovslite loads pyroute2's submodules without its package __init__, and nothing breaks.

Each check runs in a fresh interpreter: in this one pyroute2 may be loaded already.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap


def run(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_daemon_and_iproute_do_not_load_all_of_pyroute2():
    out = run("""
        import sys
        import ovslite.daemon
        from pyroute2.iproute.linux import IPRoute  # what ovslite.rtnl uses
        print("NDB" in vars(sys.modules["pyroute2"]), "pyroute2.ndb.main" in sys.modules)
    """)
    assert out == "False False"


def test_names_of_the_package_init_still_work():
    out = run("""
        import ovslite.control.messages
        import pyroute2
        from pyroute2 import netns  # a submodule: loaded alone
        print("NDB" in vars(pyroute2), netns.__name__)
        from pyroute2 import IPRoute, NDB  # names __init__ defines: it runs once
        import pyroute2.iproute.linux
        print(IPRoute is pyroute2.iproute.linux.IPRoute, NDB.__name__, bool(pyroute2.__version__))
    """)
    assert out.splitlines() == ["False pyroute2.netns", "True NDB True"]


def test_pyroute2_imported_first_is_left_alone():
    out = run("""
        import pyroute2
        import ovslite
        import sys
        print(sys.modules["pyroute2"] is pyroute2, "NDB" in vars(pyroute2))
    """)
    assert out == "True True"
