"""Fixtures for the integration tests: `net` (namespaces, veth, processes) and
`daemon` (a running ovslited with its own database and socket, plus `ctl`)."""

from __future__ import annotations

import pytest

from .daemon import Daemon
from .netns import Network, leftovers, why_unusable

#: how much of a daemon's stderr to attach to a failing test's report
STDERR_TAIL = 20000


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for d in getattr(item, "_ovslite_daemons", ()):
            text = d.all_stderr()
            if len(text) > STDERR_TAIL:
                text = "[...]\n" + text[-STDERR_TAIL:]
            rep.sections.append((f"{d.label} stderr ({d.stderr_path})", text or "(empty)"))


@pytest.fixture(scope="session", autouse=True)
def _no_leftovers():
    """After the run, nothing named by this run may remain."""
    yield
    if why_unusable() is None:
        left = leftovers()
        assert not left, f"integration tests left behind: {left}"


@pytest.fixture
def net():
    network = Network()
    try:
        yield network
    finally:
        problems = network.close()
        assert not problems, f"teardown could not remove: {problems}"


@pytest.fixture
def make_daemon(request, tmp_path):
    """Factory for extra daemons; each is stopped at teardown."""
    made: list[Daemon] = []
    request.node._ovslite_daemons = made

    def make(label: str = "ovslited", start: bool = True, **kw) -> Daemon:
        workdir = tmp_path / label
        workdir.mkdir(exist_ok=True)
        d = Daemon(workdir, label=label, **kw)
        made.append(d)
        if start:
            d.start()
        return d

    yield make
    problems = []
    for d in reversed(made):
        try:
            d.stop()  # SIGTERM; SIGKILL (and an error) if it does not exit in time
        except AssertionError as exc:
            problems.append(str(exc))
    assert not problems, "; ".join(problems)


@pytest.fixture
def daemon(make_daemon) -> Daemon:
    return make_daemon()
