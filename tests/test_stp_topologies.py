"""Random LANs: whatever the graph, the forwarding ports make one loop-free tree.

Seeded random graphs of bridges (all STP, all RSTP, or mixed) joined by
point-to-point links, some doubled; after convergence every bridge agrees on
the root (the lowest bridge id) and a broadcast from any bridge reaches every
other bridge exactly once. Then links are cut and brought back, and the same
must hold for what is still connected."""

from __future__ import annotations

import random

import pytest
from stp_lan import Lan


def random_lan(seed: int, modes: tuple[str, ...], hubs: bool = False):
    rng = random.Random(seed)
    lan = Lan()
    names = [f"b{i}" for i in range(rng.randint(3, 6))]
    for i, name in enumerate(names):
        lan.bridge(name, 0x10 + i, priority=rng.choice([4096, 32768, 32768, 61440]),
                   mode=rng.choice(modes))
    ports = {name: 0 for name in names}

    def join(a, b):
        ports[a] += 1
        ports[b] += 1
        return lan.link(f"{a}:{a}p{ports[a]}", f"{b}:{b}p{ports[b]}",
                        speed=rng.choice([100, 1000, 10000]))

    links = []
    for i in range(1, len(names)):  # a random tree keeps it connected...
        links.append(join(names[i], names[rng.randrange(i)]))
    for _ in range(rng.randint(1, 4)):  # ...and extra links make loops
        a, b = rng.sample(names, 2)
        links.append(join(a, b))
    if hubs:  # shared segments, a bridge on them maybe twice (backup ports)
        for _ in range(2):
            members = [rng.choice(names) for _ in range(3)]
            ends = []
            for m in members:
                ports[m] += 1
                ends.append(f"{m}:{m}p{ports[m]}")
            links.append(lan.link(*ends, point_to_point=False))
    return lan, links, rng


def components(lan):
    """Bridges grouped by what up links join."""
    parent = {b: b for b in lan.bridges}

    def find(x):
        while parent[x] != x:
            x = parent[x]
        return x
    for seg in lan.segments:
        if seg.up:
            ends = [b for b, _ in seg.ends]
            for other in ends[1:]:
                parent[find(other)] = find(ends[0])
    groups = {}
    for b in lan.bridges:
        groups.setdefault(find(b), set()).add(b)
    return list(groups.values())


def check_tree(lan):
    for group in components(lan):
        ids = {lan.bridges[b].show()["bridge"]["id"]: b for b in group}
        best = min(ids, key=lambda i: (int(i.split(".")[0], 16), int(i.split(".")[1], 16)))
        assert {lan.root_of(b) for b in group} == {best}
        for origin in group:
            copies = lan.flooded_copies(origin)
            assert {b: copies[b] for b in group} == {b: 1 for b in group}, (origin, copies)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("modes", [("stp",), ("rstp",), ("stp", "rstp")], ids=["stp", "rstp", "mixed"])
@pytest.mark.parametrize("hubs", [False, True], ids=["links", "hubs"])
def test_random_lan_forms_one_tree_and_heals(seed, modes, hubs):
    lan, links, rng = random_lan(seed, modes, hubs)
    lan.run(60, step=0.5)
    check_tree(lan)
    for _ in range(3):
        cut = rng.choice(links)
        lan.set_up(cut, False)
        lan.run(60, step=0.5)
        check_tree(lan)
        lan.set_up(cut, True)
        lan.run(60, step=0.5)
        check_tree(lan)
