"""Messages over Flower's ``Grid``: wait for the nodes, push and pull with a
round timeout (checking for interruption while waiting), keep the replies that
validate and say why the others were dropped."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
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


def exchange(
    grid: Grid, messages: Sequence[Message], timeout: float, while_waiting: Callable[[], None] | None = None
) -> list[Message]:
    """Push ``messages``, run ``while_waiting``, pull replies until all came or ``timeout``.

    Pushing gives each message its id, so ``unanswered`` tells afterwards which nodes were silent.
    """
    started = time.monotonic()
    ids = list(grid.push_messages(messages))
    if while_waiting is not None:
        while_waiting()
    replies: dict[str, Message] = {}
    while True:
        pending = [mid for mid in ids if mid not in replies]
        for reply in grid.pull_messages(pending) if pending else ():
            replies[reply.metadata.reply_to_message_id] = reply
        if len(replies) == len(ids) or time.monotonic() - started > timeout:
            break
        interruption.check()
        time.sleep(POLL_SECONDS)
    return list(replies.values())


def unanswered(sent: Sequence[Message], replies: Sequence[Message], timeout: float, round_number: int) -> list[dict]:
    """A failure for each node of the (pushed) ``sent`` messages that no reply answers, in sending order."""
    answered = {reply.metadata.reply_to_message_id for reply in replies}
    return [
        {"node": message.metadata.dst_node_id, "round": round_number, "reason": f"no reply within round-timeout {timeout:g} s"}
        for message in sent
        if message.metadata.message_id not in answered
    ]


def validate(
    messages: Sequence[Message],
    expected: Expected,
    round_number: int,
    parse: Callable[[Message, Expected], Reply],
    partitions: Mapping[int, int],
) -> tuple[list[Reply], list[dict]]:
    """Keep the replies ``parse`` accepts from the node each partition is bound to
    (``partitions``: node -> partition), in partition order; list the rest as failures."""
    valid: dict[int, Reply] = {}
    failures = []
    for message in messages:
        try:
            reply = parse(message, expected)
            if partitions.get(reply.node_id) != reply.partition_id:
                raise ReplyError(
                    f"claims partition-id {reply.partition_id}; the server assigned it {partitions.get(reply.node_id)}"
                )
            if reply.partition_id in valid:
                raise ReplyError(f"partition-id {reply.partition_id} already answered this round")
            valid[reply.partition_id] = reply
        except ReplyError as err:
            failures.append({"node": message.metadata.src_node_id, "round": round_number, "reason": str(err)})
    return [valid[p] for p in sorted(valid)], failures
