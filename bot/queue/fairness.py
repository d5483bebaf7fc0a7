"""Fair order between users, so one user's ten jobs do not delay another user's first."""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterator
from itertools import zip_longest
from typing import Generic, TypeVar

T = TypeVar("T")

NEVER = -1  # the turn of a user never served: before everyone who was


class FairQueue(Generic[T]):
    """Each turn serves the oldest job of the waiting user who was served least recently.

    Users never served go first, in the order their jobs arrived; so a newcomer waits for at most one
    job of each user already waiting, and a user whose job just started waits behind everyone else.
    While all users keep jobs waiting this is plain round-robin. Items are compared by identity.
    """

    def __init__(self) -> None:
        self._items: dict[int, deque[tuple[int, T]]] = {}
        self._last_turn: dict[int, int] = {}
        self._arrivals = itertools.count()
        self._turns = itertools.count(1)
        self._urgent = itertools.count(NEVER - 1, -1)

    def push(self, user_id: int, item: T) -> None:
        self._items.setdefault(user_id, deque()).append((next(self._arrivals), item))

    def push_front(self, user_id: int, item: T) -> None:
        """Put an interrupted job back so it is the very next one to run."""
        self._items.setdefault(user_id, deque()).appendleft((next(self._arrivals), item))
        self._last_turn[user_id] = next(self._urgent)

    def pop(self) -> T:
        user_id = self._users()[0]
        items = self._items[user_id]
        _, item = items.popleft()
        if not items:
            del self._items[user_id]
        self._last_turn[user_id] = next(self._turns)
        return item

    def remove(self, item: T) -> bool:
        for user_id, items in self._items.items():
            for index, (_, candidate) in enumerate(items):
                if candidate is item:
                    del items[index]
                    if not items:
                        del self._items[user_id]
                    return True
        return False

    def count(self, user_id: int) -> int:
        return len(self._items.get(user_id, ()))

    def __len__(self) -> int:
        return sum(len(items) for items in self._items.values())

    def __bool__(self) -> bool:
        return bool(self._items)

    def __iter__(self) -> Iterator[T]:
        """Items in the order ``pop`` would return them: once served, users keep their relative order."""
        for round_ in zip_longest(*(self._items[user_id] for user_id in self._users())):
            yield from (entry[1] for entry in round_ if entry is not None)

    def _users(self) -> list[int]:
        return sorted(
            self._items,
            key=lambda user_id: (self._last_turn.get(user_id, NEVER), self._items[user_id][0][0]),
        )
