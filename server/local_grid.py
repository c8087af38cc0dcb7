"""A Flower ``Grid`` whose nodes are ClientApps (relatlas's, or an algorithm's) called in
this process, one after the other: no Ray, no SuperLink. The strategy, the messages and the clients'
code are a simulation's; only the transport is skipped, so a benchmark of many
small federations (``relatlas bench feedback --in-process``) runs on a busy laptop.

Each node keeps its ``Context`` (its model between rounds) for the grid's life."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from uuid import uuid4

from flwr.app import Context, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid
from flwr.supercore.task_identity import TaskIdentity

from relatlas.clients.checkpoint import STATE_DIR_KEY
from relatlas.clients.client_app import app as relatlas_client_app

FIRST_NODE = 101


class LocalGrid(Grid):
    """``num_nodes`` nodes (ids 101, 102, ...) that answer each message at once with ``client_app``
    (relatlas's by default); their saved state under ``state_dir``."""

    def __init__(self, num_nodes: int, state_dir: Path, client_app: ClientApp | None = None) -> None:
        for name in ("task_id", "run_id", "node_id"):  # what Flower's ServerApp runtime sets before messages are made
            if getattr(TaskIdentity, f"_{name}") is None:
                setattr(TaskIdentity, name, 1)
        config = {STATE_DIR_KEY: str(state_dir)}
        self.contexts = {n: Context(0, n, config, RecordDict(), {}) for n in range(FIRST_NODE, FIRST_NODE + num_nodes)}
        self.replies: dict[str, Message] = {}
        self.client_app = client_app or relatlas_client_app

    def set_run(self, run_id: int) -> None:
        raise NotImplementedError("a local grid runs one federation, with no Flower run")

    @property
    def run(self):
        raise NotImplementedError("a local grid runs one federation, with no Flower run")

    def create_message(self, *args, **kwargs) -> Message:
        raise NotImplementedError("relatlas's strategy makes its own messages")

    def get_node_ids(self) -> Iterable[int]:
        return list(self.contexts)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        ids = []
        for message in messages:
            message.metadata.__dict__["_message_id"] = str(uuid4())  # as Flower's own grids do
            reply = self.answer(message)
            if reply is not None:
                self.replies[message.metadata.message_id] = reply
            ids.append(message.metadata.message_id)
        return ids

    def answer(self, message: Message) -> Message | None:
        """The node's reply to ``message`` (``None``: it stays silent; tests make nodes that do)."""
        return self.client_app(message, self.contexts[message.metadata.dst_node_id])

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return [self.replies.pop(mid) for mid in message_ids if mid in self.replies]

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        return self.pull_messages(self.push_messages(messages))
