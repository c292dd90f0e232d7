"""The embedded broker (morale/broker.py) under the race that killed the worker.

Two producer processes and two consumer processes hammer one queue folder, as web, beat
and the worker do. kombu's stock filesystem transport hands consumers half-written
messages (JSONDecodeError in the worker); the transport the settings select must
deliver every message exactly once, whole.
"""

import multiprocessing
import os
import time
from queue import Empty

from django.conf import settings

STOCK = "kombu.transport.filesystem:Transport"
OURS = "morale.broker:Transport"
PAYLOAD_BYTES = 100_000  # large enough that writing a message takes longer than listing the folder


def _channel(transport: str, folder: str):
    from kombu import Connection

    options = {
        "data_folder_in": folder,
        "data_folder_out": folder,
        "control_folder": os.path.join(folder, "control"),
        "processed_folder": os.path.join(folder, "processed"),
        "store_processed": False,
    }
    return Connection("filesystem://localhost/", transport=transport, transport_options=options).default_channel


def _produce(transport, folder, producer, count, start):
    channel = _channel(transport, folder)
    start.wait(timeout=120)
    for i in range(count):
        channel._put("race", {"id": f"{producer}-{i}", "pad": "x" * PAYLOAD_BYTES})


def _consume(transport, folder, results, start, stop):
    channel = _channel(transport, folder)
    start.wait(timeout=120)
    received, broken = [], 0
    while True:
        try:
            received.append(channel._get("race")["id"])
        except Empty:
            if stop.is_set():
                break
        except Exception:  # noqa: BLE001 - a half-written message, whatever the decoder raises
            broken += 1
    results.put((received, broken))


def hammer(transport: str, folder, *, per_producer: int = 500) -> tuple[list[str], int]:
    """(ids received by the consumers, messages they could not decode)."""
    os.makedirs(folder / "control")
    os.makedirs(folder / "processed")
    mp = multiprocessing.get_context("spawn")  # fresh processes: nothing of pytest's state
    # Every process waits at the barrier until all four have imported kombu: the race
    # needs producers and consumers working at the same moment.
    start, stop, results = mp.Barrier(5), mp.Event(), mp.Queue()
    producers = [mp.Process(target=_produce, args=(transport, str(folder), p, per_producer, start)) for p in range(2)]
    consumers = [mp.Process(target=_consume, args=(transport, str(folder), results, start, stop)) for _ in range(2)]
    for process in producers + consumers:
        process.start()
    start.wait(timeout=120)
    for process in producers:
        process.join(timeout=120)
    time.sleep(0.5)  # let the consumers drain the folder
    stop.set()
    outcomes = [results.get(timeout=60) for _ in consumers]
    for process in consumers:
        process.join(timeout=30)
    return [i for received, _ in outcomes for i in received], sum(broken for _, broken in outcomes)


def test_stock_filesystem_transport_hands_consumers_half_written_messages(tmp_path):
    """The race is real: this harness catches it on kombu's own transport."""
    received, broken = hammer(STOCK, tmp_path)
    assert broken > 0
    assert len(set(received)) < 1000


def test_embedded_transport_delivers_every_message_once_and_whole(tmp_path):
    received, broken = hammer(OURS, tmp_path)
    assert broken == 0
    assert len(received) == 1000
    assert len(set(received)) == 1000
    assert sorted(os.listdir(tmp_path)) == ["claimed", "control", "processed"]  # nothing half-written is left


def test_settings_select_the_race_free_transport_for_a_filesystem_broker_only():
    from morale.celery import app

    with app.connection_for_write() as connection:
        transport_module = type(connection.transport).__module__
    if settings.CELERY_BROKER_URL.startswith("filesystem://"):
        assert settings.CELERY_BROKER_TRANSPORT == OURS
        assert transport_module == "morale.broker"
    else:  # the PostgreSQL + Redis pass: the URL's own transport
        assert settings.CELERY_BROKER_TRANSPORT is None
        assert transport_module == "kombu.transport.redis"
