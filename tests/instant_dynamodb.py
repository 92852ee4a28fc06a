"""A DynamoDB stand-in that answers at once, for capacity runs.

    python tests/instant_dynamodb.py PORT

moto_server does 150 to 300 operations a second and closes every connection,
so under load it, not timercheck, is what saturates. This answers GetItem,
PutItem, UpdateItem and DeleteItem over kept-alive connections from a dict in
memory, with just the expressions timercheck sends (SET with if_not_exists,
ADD of numbers and number sets, DELETE from a number set, REMOVE, and the
condition attribute_exists). It checks no signature and keeps nothing. It is
no reference for DynamoDB's behaviour (the tests use moto for that), but for
one thing moto does differently: an update that finds no item makes one of
its key alone, as DynamoDB does (seen on dynalite 4), and test_stores.py
relies on that.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from decimal import Decimal
from typing import Any

Item = dict[str, dict[str, Any]]
COMMA = re.compile(r",(?![^(]*\))")  # not the one inside if_not_exists(a, :b)
CLAUSE = re.compile(r"\b(SET|ADD|REMOVE|DELETE)\b")
IF_NOT_EXISTS = re.compile(r"if_not_exists\(\s*([^,\s]+)\s*,\s*(:\w+)\s*\)")
LENGTH = re.compile(r"content-length:\s*(\d+)", re.I)
TARGET = re.compile(r"x-amz-target:\s*\S+\.(\w+)", re.I)
FAILED = "com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException"


class Table:
    def __init__(self) -> None:
        self.items: dict[str, Item] = {}

    def get_item(self, request: dict[str, Any]) -> dict[str, Any]:
        item = self.items.get(key_of(request))
        return {"Item": item} if item else {}

    def put_item(self, request: dict[str, Any]) -> dict[str, Any]:
        old = self.items.get(key_of(request["Item"]))
        self.items[key_of(request["Item"])] = request["Item"]
        return {"Attributes": old} if old and wants_old(request) else {}

    def delete_item(self, request: dict[str, Any]) -> dict[str, Any]:
        old = self.items.pop(key_of(request), None)
        return {"Attributes": old} if old and wants_old(request) else {}

    def update_item(self, request: dict[str, Any]) -> dict[str, Any]:
        key = key_of(request)
        old = self.items.get(key)
        condition = request.get("ConditionExpression", "")
        if "attribute_exists" in condition and not old:
            raise ConditionFailed
        names = request.get("ExpressionAttributeNames", {})
        values = request.get("ExpressionAttributeValues", {})
        new: Item = dict(old) if old else dict(request["Key"])
        updated = []
        parts = CLAUSE.split(request["UpdateExpression"])[1:]
        for verb, body in zip(parts[::2], parts[1::2], strict=True):
            for action in filter(None, (a.strip() for a in COMMA.split(body))):
                if verb == "REMOVE":
                    new.pop(names.get(action, action), None)
                    continue
                if verb in ("ADD", "DELETE"):
                    name, value = action.split()
                    name = names.get(name, name)
                    if "NS" in values[value]:
                        members = set(new.get(name, {}).get("NS", ()))
                        if verb == "ADD":
                            members |= set(values[value]["NS"])
                        else:
                            members -= set(values[value]["NS"])
                        new[name] = {"NS": sorted(members)}
                        continue
                    total = Decimal(new.get(name, {"N": "0"})["N"])
                    new[name] = {"N": str(total + Decimal(values[value]["N"]))}
                else:
                    name, _, expression = (p.strip() for p in action.partition("="))
                    name = names.get(name, name)
                    if match := IF_NOT_EXISTS.fullmatch(expression):
                        # Right-hand sides read the item as it was.
                        kept = (old or {}).get(names.get(match[1], match[1]))
                        new[name] = kept or values[match[2]]
                    else:
                        new[name] = values[expression]
                updated.append(name)
        self.items[key] = new
        returns = request.get("ReturnValues", "NONE")
        if returns == "ALL_OLD":
            return {"Attributes": old} if old else {}
        if returns == "ALL_NEW":
            return {"Attributes": new}
        if returns == "UPDATED_NEW":
            return {"Attributes": {n: new[n] for n in updated if n in new}}
        return {}


class ConditionFailed(Exception):
    pass


def key_of(request: dict[str, Any]) -> str:
    """The hash key: timercheck's `timer`, or the Go original's `Timer`."""
    key = request.get("Key", request)
    return (key["timer"] if "timer" in key else key["Timer"])["S"]


def wants_old(request: dict[str, Any]) -> bool:
    return request.get("ReturnValues") == "ALL_OLD"


OPERATIONS = {
    "GetItem": Table.get_item,
    "PutItem": Table.put_item,
    "UpdateItem": Table.update_item,
    "DeleteItem": Table.delete_item,
}


class Connection(asyncio.Protocol):
    def __init__(self, tables: dict[str, Table]) -> None:
        self.tables, self.buffer = tables, b""

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head = self.buffer[:end].decode("latin-1")
            length = int(LENGTH.search(head)[1])  # type: ignore[index]
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            target = TARGET.search(head)[1]  # type: ignore[index]
            self.transport.write(self.answer(target, body))

    def answer(self, operation: str, body: bytes) -> bytes:
        request = json.loads(body)
        table = self.tables.setdefault(request["TableName"], Table())
        try:
            status, payload = "200 OK", OPERATIONS[operation](table, request)
        except ConditionFailed:
            status, payload = "400 Bad Request", {"__type": FAILED, "message": "no"}
        data = json.dumps(payload).encode()
        return (
            f"HTTP/1.1 {status}\r\nContent-Type: application/x-amz-json-1.0\r\n"
            f"Content-Length: {len(data)}\r\n\r\n"
        ).encode() + data


async def serve(port: int) -> None:
    tables: dict[str, Table] = {}
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: Connection(tables), "127.0.0.1", port, backlog=1024
    )
    print(f"instant dynamodb on 127.0.0.1:{port}", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))
