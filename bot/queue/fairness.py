"""Fair order between users, so one user's ten jobs do not delay another user's first."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable, Iterator
from itertools import zip_longest
from typing import Generic, TypeVar

T = TypeVar("T")

NEVER = -1  # the turn of a user never served: before everyone who was


class FairQueue(Generic[T]):
    """Each turn serves the oldest job of the waiting user who was served least recently.

    Users never served go first, in the order their jobs arrived; so a newcomer waits for at most one
    job of each user already waiting, and a user whose job just started waits behind everyone else.
    While all users keep jobs waiting this is plain round-robin. Items are compared by identity.

    With ``group`` (a job's model), a turn may go to a user whose oldest job is in the group of the job
    served last (its model is still loaded on the GPU), but only within the current round: a round
    serves every user waiting in it once, and the users whose turn it is are those not served since it
    began (newcomers included). Among them, the least recently served one whose oldest job is in that
    group goes first, else the least recently served; once all have been served, the next round
    begins. So nobody is passed over twice by the same user: compared with round-robin a user waits at
    most one round longer, and a round changes the model at most once per model waiting in it.
    """

    def __init__(self, group: Callable[[T], Hashable] | None = None) -> None:
        self._group = group
        self._items: dict[int, deque[tuple[int, T]]] = {}
        self._last_turn: dict[int, int] = {}
        self._arrivals = 0
        self._turn = 0  # the last turn given
        self._urgent = NEVER - 1  # put-backs count down from here: before everybody else
        self._round_start = 0  # users last served before this turn may be served in the current round
        self._served_group: Hashable | None = None

    def push(self, user_id: int, item: T) -> None:
        self._arrivals += 1
        self._items.setdefault(user_id, deque()).append((self._arrivals, item))

    def push_front(self, user_id: int, item: T) -> None:
        """Put an interrupted job back so it is the very next one to run."""
        self._arrivals += 1
        self._items.setdefault(user_id, deque()).appendleft((self._arrivals, item))
        self._last_turn[user_id] = self._urgent
        self._urgent -= 1

    def pop(self) -> T:
        user_id = self._next_user()
        items = self._items[user_id]
        _, item = items.popleft()
        if not items:
            del self._items[user_id]
        self._turn += 1
        self._last_turn[user_id] = self._turn
        if self._group is not None:
            self._served_group = self._group(item)
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
        """Items in the order ``pop`` would return them."""
        if len(self._groups()) > 1:  # the group decides turns: follow them on a copy
            turns = self._copy()
            while turns:
                yield turns.pop()
            return
        # Round-robin: once served, users keep their relative order.
        users = sorted(self._items, key=self._fair_rank)
        for round_ in zip_longest(*(self._items[user_id] for user_id in users)):
            yield from (entry[1] for entry in round_ if entry is not None)

    def _next_user(self) -> int:
        """Whose turn it is (starting the next round when everyone waiting was served in this one)."""
        user_id = min(self._items, key=self._rank)
        if self._last_turn.get(user_id, NEVER) >= self._round_start:
            self._round_start = self._turn + 1
            user_id = min(self._items, key=self._rank)
        return user_id

    def _rank(self, user_id: int) -> tuple[bool, bool, int, int]:
        """Put-backs first (their turn is below ``NEVER``), then the users whose turn it is in this
        round, those with a job in the group served last first, each part least recently served first."""
        last, arrival = self._fair_rank(user_id)
        later_round = last >= self._round_start
        other_group = last >= NEVER and (
            self._group is None or self._group(self._items[user_id][0][1]) != self._served_group
        )
        return later_round, other_group, last, arrival

    def _fair_rank(self, user_id: int) -> tuple[int, int]:
        return self._last_turn.get(user_id, NEVER), self._items[user_id][0][0]

    def _groups(self) -> set[Hashable]:
        if self._group is None:
            return set()
        return {self._group(item) for items in self._items.values() for _, item in items}

    def _copy(self) -> FairQueue[T]:
        copy: FairQueue[T] = FairQueue(self._group)
        copy.__dict__.update(self.__dict__)
        copy._items = {user_id: deque(items) for user_id, items in self._items.items()}
        copy._last_turn = dict(self._last_turn)
        return copy
