"""Messages over Flower's ``Grid``: wait for the nodes, push and pull with a
round timeout (checking for interruption while waiting), replies yielded batch by
batch as they are pulled, keep the replies that validate and say why the others were dropped."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from typing import TypeVar

from flwr.app import Message
from flwr.serverapp import Grid

from relatlas.server import interruption
from relatlas.server.replies import AnchoringReply, ClientReply, Expected, ReplyError

POLL_SECONDS = 0.2

Reply = TypeVar("Reply", ClientReply, AnchoringReply)


class FederationError(RuntimeError):
    """The run cannot go on (too few clients); finished rounds are kept."""


def wait_for_nodes(grid: Grid, wanted: int, minimum: int, timeout: float) -> list[int]:
    """Wait until ``wanted`` nodes are connected, or ``timeout`` seconds; then need ``minimum``."""
    deadline = time.monotonic() + timeout
    nodes = sorted(grid.get_node_ids())
    while len(nodes) < wanted and time.monotonic() < deadline:
        interruption.check()
        time.sleep(POLL_SECONDS)
        nodes = sorted(grid.get_node_ids())
    if len(nodes) < minimum:
        raise FederationError(f"only {len(nodes)} of the {minimum} clients needed (min-clients) connected within {timeout:g} s")
    return nodes[:wanted]


class PulledReplies:
    """The replies to ``messages``, pushed when first iterated and yielded as each batch is pulled,
    until all came or ``timeout`` (checking for interruption while waiting); ``while_waiting`` runs
    once they are pushed. Only the answered ids are kept, not the replies: a consumer that merges
    each reply and drops it holds one at a time (Flower's in-memory grid deletes a pulled reply
    from its store). Pushing gives each message its id, so ``unanswered`` tells afterwards which
    nodes were silent."""

    def __init__(
        self, grid: Grid, messages: Sequence[Message], timeout: float, while_waiting: Callable[[], None] | None = None
    ) -> None:
        self.grid, self.messages, self.timeout, self.while_waiting = grid, messages, timeout, while_waiting
        self.answered: set[str] = set()  # ids of the messages a reply answered

    def __iter__(self) -> Iterator[Message]:
        started = time.monotonic()
        ids = list(self.grid.push_messages(self.messages))
        if self.while_waiting is not None:
            self.while_waiting()
        while True:
            pending = [mid for mid in ids if mid not in self.answered]
            for reply in self.grid.pull_messages(pending) if pending else ():
                if reply.metadata.reply_to_message_id not in self.answered:
                    self.answered.add(reply.metadata.reply_to_message_id)
                    yield reply
            if len(self.answered) == len(ids) or time.monotonic() - started > self.timeout:
                break
            interruption.check()
            time.sleep(POLL_SECONDS)

    @property
    def complete(self) -> bool:
        """Whether every message has been answered."""
        return len(self.answered) == len(self.messages)


def exchange(
    grid: Grid, messages: Sequence[Message], timeout: float, while_waiting: Callable[[], None] | None = None
) -> list[Message]:
    """Push ``messages``, run ``while_waiting``, pull replies until all came or ``timeout``: every reply at once."""
    return list(PulledReplies(grid, messages, timeout, while_waiting))


def answered_ids(replies: Iterable[Message], answered: set[str]) -> Iterator[Message]:
    """``replies`` as they come, each one's ``reply_to_message_id`` added to ``answered`` (for ``unanswered``)."""
    for reply in replies:
        answered.add(reply.metadata.reply_to_message_id)
        yield reply


def unanswered(sent: Sequence[Message], answered: Collection[str], timeout: float, round_number: int) -> list[dict]:
    """A failure for each node of the (pushed) ``sent`` messages whose id no reply ``answered``, in sending order."""
    return [
        {"node": message.metadata.dst_node_id, "round": round_number, "reason": f"no reply within round-timeout {timeout:g} s"}
        for message in sent
        if message.metadata.message_id not in answered
    ]


def validated(
    messages: Iterable[Message],
    expected: Expected,
    round_number: int,
    parse: Callable[[Message, Expected], Reply],
    partitions: Mapping[int, int],
    failures: list[dict],
) -> Iterator[Reply]:
    """The replies ``parse`` accepts from the node each partition is bound to (``partitions``:
    node -> partition), one by one as ``messages`` come; the rest appended to ``failures``."""
    answered: set[int] = set()
    for message in messages:
        try:
            reply = parse(message, expected)
            if partitions.get(reply.node_id) != reply.partition_id:
                raise ReplyError(
                    f"claims partition-id {reply.partition_id}; the server assigned it {partitions.get(reply.node_id)}"
                )
            if reply.partition_id in answered:
                raise ReplyError(f"partition-id {reply.partition_id} already answered this round")
        except ReplyError as err:
            failures.append({"node": message.metadata.src_node_id, "round": round_number, "reason": str(err)})
            continue
        answered.add(reply.partition_id)
        yield reply


def validate(
    messages: Iterable[Message],
    expected: Expected,
    round_number: int,
    parse: Callable[[Message, Expected], Reply],
    partitions: Mapping[int, int],
) -> tuple[list[Reply], list[dict]]:
    """Every reply ``validated`` keeps, in partition order, and the failures."""
    failures: list[dict] = []
    valid = sorted(validated(messages, expected, round_number, parse, partitions, failures), key=lambda r: r.partition_id)
    return valid, failures
