"""Redis commands on a request's critical path, on a connection the process keeps for them.

redis-py's client spends about 50 µs of CPU per command around the round trip itself (taking a connection from
the pool and checking it, retry wrappers, metrics and events); on its own connection object a command costs a
fifth of that. The connection is redis-py's own (its parser, reconnecting, timeouts), taken once per process and
thread from the client's pool and given back to none: commands here never share it with anything else.
"""
from __future__ import annotations

import hashlib
import os
import threading

from redis.exceptions import NoScriptError

_local = threading.local()


def _connection(client):
    conn = getattr(_local, "connection", None)
    # A forked child (a prefork worker) must not speak on its parent's socket.
    if conn is None or _local.owner != (os.getpid(), id(client)):
        conn = client.connection_pool.make_connection()
        _local.connection, _local.owner = conn, (os.getpid(), id(client))
    return conn


def pipelined(client, commands: list[tuple]) -> list:
    """The replies of `commands` (tuples of a command's name and arguments), sent together in one round trip.
    Raises what redis-py raises; the connection is then dropped and made afresh by the next call."""
    conn = _connection(client)
    try:
        conn.send_packed_command(conn.pack_commands(commands))
        return [conn.read_response() for _ in commands]
    except BaseException:
        conn.disconnect()
        raise


class Script:
    """A Lua script run by its SHA1 (EVALSHA), loaded on the server the first time it is missing there."""

    def __init__(self, source: str):
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    def __call__(self, client, keys: list, args: list):
        try:
            [reply] = pipelined(client, [("EVALSHA", self.sha, len(keys), *keys, *args)])
        except NoScriptError:
            [reply] = pipelined(client, [("EVAL", self.source, len(keys), *keys, *args)])
        return reply
