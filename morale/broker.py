"""The embedded default's Celery broker: kombu's filesystem transport, made race-free.

kombu's own filesystem channel creates each message file under its final ``*.msg`` name
and only then writes the payload. A consumer listing the folder in between moves the
empty file away and dies on ``JSONDecodeError`` (seen when beat queued a periodic task
while the worker polled). Its consumer also "claims" a file with ``shutil.move`` into the
system temporary folder, which is a copy plus a delete when that folder is on another
file system, so two consumers can both read one message.

Here a message is written under a name no consumer looks at, flushed, and renamed into
place (``os.replace`` is atomic within a folder), and a consumer claims a file with one
``os.rename`` into a claim folder beside the queue, on the same file system: exactly one
consumer wins, and what it reads is always the whole message.

Selected by ``CELERY_BROKER_TRANSPORT`` in the settings whenever the broker URL is
``filesystem://``; Redis deployments never load this module.
"""

from __future__ import annotations

import os
import uuid
from functools import cached_property
from queue import Empty

from kombu.transport import filesystem
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads

# A message being written: no consumer matches this suffix ("<queue>.msg" is what they look for).
_WRITING_SUFFIX = ".writing"
# Claimed messages, read and deleted by the consumer that renamed them here.
CLAIM_FOLDER = "claimed"


class Channel(filesystem.Channel):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # kombu creates none of its folders; the settings only name them.
        for folder in (self.data_folder_in, self.data_folder_out, self.control_folder, self.processed_folder):
            os.makedirs(folder, exist_ok=True)

    def _put(self, queue, payload, **kwargs):
        """Write the message under a private name, then rename it into the queue."""
        name = f"{int(round(filesystem.monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        staging = final + _WRITING_SUFFIX
        try:
            with open(staging, "wb") as handle:
                handle.write(str_to_bytes(dumps(payload)))
                handle.flush()
                os.fsync(handle.fileno())  # a power cut leaves no named, empty message
            os.replace(staging, final)
        except OSError as exc:
            try:
                os.unlink(staging)
            except OSError:
                pass
            raise filesystem.ChannelError(f"Cannot add file {final!r} to directory") from exc

    @cached_property
    def claim_folder(self) -> str:
        folder = os.path.join(self.data_folder_in, CLAIM_FOLDER)
        os.makedirs(folder, exist_ok=True)  # before any rename: a missing target looks like a lost race
        return folder

    def _get(self, queue):
        """Claim the oldest message of ``queue`` with one rename; only the winner reads it."""
        wanted = f"{queue}.msg"
        for name in sorted(os.listdir(self.data_folder_in)):
            if name.partition(".")[2] != wanted:
                continue  # another queue's message, a file being written, or the claim folder
            claimed = os.path.join(self.claim_folder, name)
            try:
                os.rename(os.path.join(self.data_folder_in, name), claimed)
            except FileNotFoundError:
                continue  # another consumer claimed it first
            except OSError as exc:
                raise filesystem.ChannelError(f"Cannot claim {name!r} from the queue folder") from exc
            try:
                with open(claimed, "rb") as handle:
                    payload = handle.read()
                if self.store_processed:
                    os.replace(claimed, os.path.join(self.processed_folder, name))
                else:
                    os.unlink(claimed)
            except OSError as exc:
                raise filesystem.ChannelError(f"Cannot read file {claimed!r} from queue.") from exc
            return loads(bytes_to_str(payload))
        raise Empty()


class Transport(filesystem.Transport):
    Channel = Channel
