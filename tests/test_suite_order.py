"""The suite's own order (tests/conftest.py): every test process starts its share with its long tests,
then with the whole modules whose tests share processes started once."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest

from tests.conftest import order_long_first


@dataclass(eq=False)
class Item:
    """A collected test as the ordering sees it: its module, and its marks."""

    module: object
    long: bool = False
    together: bool = False

    def get_closest_marker(self, name: str) -> str | None:
        return name if (name == "long" and self.long) or (name == "together" and self.together) else None


def collection(layout: list[tuple[int, set[int], bool]]) -> list[Item]:
    """One module per (number of tests, positions of its long tests, marked together), in that order."""
    items = []
    for size, long_ones, together in layout:
        module = object()
        items += [Item(module, position in long_ones, together) for position in range(size)]
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


def modules(size: int, *sizes: int, together: bool = False) -> list[tuple[int, set[int], bool]]:
    return [(number, set(), together) for number in (size, *sizes)]


# Like the suite: READMEs and demo chapters among short tests of their own modules, modules of
# every size, a module that starts a whole system for its tests.
LAYOUTS = {
    "suite-like": [(20, {2, 3, 5, 7}, False), *modules(40), (6, {1, 2, 3, 4}, False), *modules(31, 25, 63, 12, 90)]
    + [*modules(33, 101, 45), *modules(9, together=True), *modules(70, 20, 120)],
    "modules-of-one": modules(*[1] * 100) + [(1, {0}, False)] * 5 + modules(*[1] * 100),
    "one-long-module": [*modules(50), (7, {0, 1, 2, 3, 4, 5, 6}, False), *modules(200)],
    "together-only": modules(30, 40) + modules(5, 8, together=True) + modules(60),
}


@pytest.mark.parametrize("processes", [1, 2, 5, 6, 7])
@pytest.mark.parametrize("layout", LAYOUTS.values(), ids=LAYOUTS.keys())
def test_each_share_begins_with_its_long_tests_then_whole_modules_together_and_no_module_is_cut_inside_it(
    layout: list[tuple[int, set[int], bool]], processes: int
) -> None:
    items = collection(layout)
    long_ones = [item for item in items if item.long]
    moved = [item for item in items if item.long or item.together]
    ordered = list(items)

    order_long_first(ordered, processes)

    assert sorted(map(id, ordered)) == sorted(map(id, items)), "a test was lost or doubled"
    assert [item for item in ordered if item not in moved] == [item for item in items if item not in moved]
    shares = first_shares(len(ordered), processes)
    for number, share in enumerate(shares):
        tests = [ordered[index] for index in share]
        count = len(long_ones[number::processes])  # one after another, as evenly as they go
        front = count + len(list(itertools.takewhile(lambda item: item.together, tests[count:])))
        assert [item.long for item in tests[:count]] == [True] * count, f"share {number} of {processes}"
        assert not any(item.long or item.together for item in tests[front:]), f"share {number} of {processes}"
        for module in {item.module for item in tests[count:front]}:
            assert [item for item in tests[count:front] if item.module is module] == [
                item for item in items if item.module is module
            ], f"share {number} of {processes}: a module marked together is cut"
    # A module cut by moved tests sets up its module fixtures twice, unless it is cut where a share
    # begins: its two parts then run in two processes anyway.
    for index in range(1, len(ordered)):
        if ordered[index] in moved and ordered[index - 1] not in moved:
            after = next((item for item in ordered[index:] if item not in moved), None)
            cut = after is not None and after.module is ordered[index - 1].module
            assert not cut or index in {share.start for share in shares}, f"a module cut at {index}"
