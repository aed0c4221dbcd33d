"""The suite's own order (tests/conftest.py): every test process starts its share with its long tests."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.conftest import order_long_first


@dataclass(eq=False)
class Item:
    """A collected test as the ordering sees it: its module, and whether it is marked long."""

    module: object
    long: bool = False

    def get_closest_marker(self, name: str) -> str | None:
        return name if name == "long" and self.long else None


def collection(layout: list[tuple[int, set[int]]]) -> list[Item]:
    """One module per (number of tests, positions of its long tests), in that order."""
    items = []
    for size, long_ones in layout:
        module = object()
        items += [Item(module, position in long_ones) for position in range(size)]
    return items


def first_shares(count: int, processes: int) -> list[range]:
    """The shares pytest-xdist's worksteal hands out at the start: each idle process in turn gets
    the pending tests divided by the processes left (WorkStealingScheduling.check_schedule)."""
    shares, start = [], 0
    for process in range(processes):
        size = (count - start) // (processes - process)
        shares.append(range(start, start + size))
        start += size
    return shares


# Like the suite: READMEs and demo chapters among short tests of their own modules, modules of every size.
LAYOUTS = {
    "suite-like": [(20, {2, 3, 5, 7}), (40, set()), (6, {1, 2, 3, 4}), (31, set()), (25, set()), (63, set())]
    + [(12, set()), (90, set()), (33, set()), (101, set()), (45, set()), (70, set()), (20, set()), (120, set())],
    "modules-of-one": [(1, set())] * 100 + [(1, {0})] * 5 + [(1, set())] * 100,
    "one-long-module": [(50, set()), (7, {0, 1, 2, 3, 4, 5, 6}), (200, set())],
}


@pytest.mark.parametrize("processes", [1, 2, 5, 6, 7])
@pytest.mark.parametrize("layout", LAYOUTS.values(), ids=LAYOUTS.keys())
def test_each_share_begins_with_its_long_tests_and_no_module_is_cut_inside_a_share(
    layout: list[tuple[int, set[int]]], processes: int
) -> None:
    items = collection(layout)
    long_ones = [item for item in items if item.long]
    ordered = list(items)

    order_long_first(ordered, processes)

    assert sorted(map(id, ordered)) == sorted(map(id, items)), "a test was lost or doubled"
    assert [item for item in ordered if not item.long] == [item for item in items if not item.long]
    shares = first_shares(len(ordered), processes)
    for number, share in enumerate(shares):
        tests = [ordered[index] for index in share]
        count = len(long_ones[number::processes])  # one after another, as evenly as they go
        assert [item.long for item in tests] == [True] * count + [False] * (len(tests) - count), (
            f"share {number} of {processes} does not begin with its {count} long tests, or has others"
        )
    # A module cut by long tests sets up its module fixtures twice, unless it is cut where a share
    # begins: its two parts then run in two processes anyway.
    for index in range(1, len(ordered)):
        if ordered[index].long and not ordered[index - 1].long:
            after = next((item for item in ordered[index:] if not item.long), None)
            cut = after is not None and after.module is ordered[index - 1].module
            assert not cut or index in {share.start for share in shares}, f"a module cut at {index}"
