"""The critical path's Redis connection, against the real server: replies in order, a script loaded when the
server lacks it, and a connection that the server dropped is made afresh by the next call."""
import os

import pytest
import redis as redis_lib

from profiles.common.fast_redis import Script, pipelined

pytestmark = pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs Redis")


@pytest.fixture
def client():
    client = redis_lib.Redis.from_url(os.environ["REDIS_URL"])
    client.delete("fast:a", "fast:z")
    yield client
    client.delete("fast:a", "fast:z")


def test_replies_come_in_the_order_of_the_commands(client):
    client.set("fast:a", "1")
    client.zadd("fast:z", {"x": 2, "w": 1})
    assert pipelined(client, [("GET", "fast:a"), ("ZRANGE", "fast:z", 0, -1), ("GET", "fast:missing")]) == [
        b"1", [b"w", b"x"], None]


def test_a_script_the_server_has_forgotten_is_loaded_again(client):
    script = Script("redis.call('INCRBY', KEYS[1], ARGV[1]) return redis.call('GET', KEYS[1])")
    assert script(client, ["fast:a"], [2]) == b"2"
    client.script_flush()
    assert script(client, ["fast:a"], [3]) == b"5"


def test_a_connection_the_server_closed_is_replaced_after_one_failure(client):
    client.set("fast:a", "1")
    [value, connection_id] = pipelined(client, [("GET", "fast:a"), ("CLIENT", "ID")])
    assert value == b"1"
    assert client.client_kill_filter(_id=connection_id) == 1
    # redis-py notices the closed socket when it reads or writes: at most one call fails, and the next works.
    try:
        pipelined(client, [("GET", "fast:a")])
    except redis_lib.ConnectionError:
        pass
    assert pipelined(client, [("GET", "fast:a")]) == [b"1"]


def test_a_command_error_is_raised_and_the_connection_stays_usable(client):
    client.set("fast:a", "text")
    with pytest.raises(redis_lib.ResponseError):
        pipelined(client, [("INCR", "fast:a")])
    assert pipelined(client, [("GET", "fast:a")]) == [b"text"]
