"""Helpers for your own tests.

``WorkflowEnvironment`` runs workflows in a test on virtual time: a database in memory, a
worker and a client, where a month of timers passes in milliseconds, and activities can be
replaced by fakes::

    async with WorkflowEnvironment(workflows=[subscription], activities=[payment]) as env:
        handle = await env.client.start_workflow(subscription, inp)
        print(await handle.result())        # time jumps from timer to timer meanwhile

A pytest fixture gives one per test: ``tapeflow.testing.pytest_plugin``.

``replay`` checks that changed workflow code still replays recorded histories: a change
that would break running workflows shows up as a NonDeterminismError, before it reaches
production::

    history = tapeflow.testing.load_history("tests/histories/order-1.json")
    tapeflow.testing.replay(place_order, history)   # raises NonDeterminismError if broken
"""

from tapeflow.testing._environment import WorkflowEnvironment
from tapeflow.testing._replay import Replayed, load_history, replay, save_history

__all__ = ["Replayed", "WorkflowEnvironment", "load_history", "replay", "save_history"]
