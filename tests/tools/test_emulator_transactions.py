"""The embedded emulator keeps DynamoDB's transaction isolation (streamline/emulator.py).

moto alone checks and writes a TransactWriteItems item by item with no lock, and a failed
one restores copies of its tables taken when it started, over whatever other requests wrote
meanwhile. The race is driven here on moto's backend in this process (over HTTP it is rarer
but real: the chaos run lost committed keyed state to it): with the emulator's lock no write
is lost; without it (checked by hand: comment out the patch) a few of these 200 are.
"""

from __future__ import annotations

import threading
import time
import uuid

from streamline.emulator import serialize_dynamodb_transactions

ROUNDS = 200
FILLER_ITEMS = 500  # copying the table (moto's rollback snapshot) then takes a while


def _backend():
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.dynamodb.models import dynamodb_backends

    return dynamodb_backends[DEFAULT_ACCOUNT_ID]["us-east-1"]


def _create_table(backend) -> str:
    table = f"tx-{uuid.uuid4().hex[:8]}"
    backend.create_table(
        table,
        schema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        attr=[{"AttributeName": "pk", "AttributeType": "S"}],
        throughput=None,
        billing_mode="PAY_PER_REQUEST",
        indexes=None,
        global_indexes=None,
        streams=None,
        sse_specification=None,
        tags=None,
        deletion_protection_enabled=False,
        warm_throughput=None,
    )
    return table


def test_a_failed_transaction_writes_nothing_of_what_it_names():
    serialize_dynamodb_transactions()
    backend = _backend()
    table = _create_table(backend)
    try:
        backend.put_item(table, {"pk": {"S": "old"}, "v": {"N": "1"}})
        transaction = [
            {"Put": {"TableName": table, "Item": {"pk": {"S": "new"}, "v": {"N": "1"}}}},
            {
                "Update": {
                    "TableName": table,
                    "Key": {"pk": {"S": "old"}},
                    "UpdateExpression": "SET v = :two",
                    "ExpressionAttributeValues": {":two": {"N": "2"}},
                }
            },
            {"ConditionCheck": {"TableName": table, "Key": {"pk": {"S": "absent"}},
                                "ConditionExpression": "attribute_exists(pk)"}},
        ]  # fmt: skip

        try:
            backend.transact_write_items(transaction)
        except Exception as exc:
            assert type(exc).__name__ == "TransactionCanceledException"
        else:
            raise AssertionError("the third item's condition should have cancelled it")

        assert backend.get_item(table, {"pk": {"S": "new"}}) is None
        old = backend.get_item(table, {"pk": {"S": "old"}}).to_json()["Attributes"]
        assert old == {"pk": {"S": "old"}, "v": {"N": "1"}}
    finally:
        backend.delete_table(table)


def test_a_failed_transaction_never_undoes_writes_made_beside_it():
    serialize_dynamodb_transactions()
    backend = _backend()
    table = _create_table(backend)
    try:
        for i in range(FILLER_ITEMS):
            backend.put_item(table, {"pk": {"S": f"filler-{i}"}, "pad": {"S": "x" * 100}})
        backend.put_item(table, {"pk": {"S": "fixed"}, "v": {"N": "0"}})
        stop = threading.Event()
        failed = 0
        unexpected: list[str] = []

        def fail_transactions() -> None:
            nonlocal failed
            impossible = {
                "Update": {
                    "TableName": table,
                    "Key": {"pk": {"S": "fixed"}},
                    "UpdateExpression": "SET v = :one",
                    "ConditionExpression": "v = :impossible",
                    "ExpressionAttributeValues": {":one": {"N": "1"}, ":impossible": {"N": "-1"}},
                }
            }
            while not stop.is_set():
                try:
                    backend.transact_write_items([impossible])
                except Exception as exc:  # moto's TransactionCanceledException, or the race's
                    if type(exc).__name__ != "TransactionCanceledException":
                        unexpected.append(repr(exc))  # e.g. the copy of a table being written
                        return
                    failed += 1
                time.sleep(0.002)  # a lock is not fair: leave the writer its turns

        failing = threading.Thread(target=fail_transactions)
        failing.start()
        try:
            for _ in range(ROUNDS):
                backend.update_item(
                    table,
                    {"pk": {"S": "counter"}},
                    update_expression="ADD n :one",
                    expression_attribute_names=None,
                    expression_attribute_values={":one": {"N": "1"}},
                )
                time.sleep(0.001)  # let the failing transactions run in between
        finally:
            stop.set()
            failing.join()

        counter = backend.get_item(table, {"pk": {"S": "counter"}}).to_json()["Attributes"]
        assert unexpected == []
        assert failed > 0
        assert counter["n"] == {"N": str(ROUNDS)}
    finally:
        backend.delete_table(table)
