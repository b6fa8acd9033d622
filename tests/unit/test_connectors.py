"""Connectors: the mapping language, the readers and every builtin mapping on sample files."""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec
import pytest

from segue.connectors import builtin_connectors, compile_mapping, load_connector
from segue.connectors.readers import read_rows, sniff_format
from segue.connectors.transforms import build_transform, money
from segue.core.events import to_event
from segue.errors import ConfigError, InvalidInput
from segue.ingest.pipeline import IngestService
from segue.ingest.validate import Limits
from segue.settings import load_settings
from segue.storage.memory import MemoryEventLog, MemoryQuarantine

DATA = Path(__file__).resolve().parents[1] / "data" / "connectors"


def run(name: str, file: str, **options):
    return load_connector(name, options).map((DATA / file).read_bytes())


def by_line(chunk):
    return dict(chunk.mapped), {line: error for line, _, error in chunk.failed}


def valid(message):
    """The message passes segue's own Segment validation."""
    return to_event(message)


# --- builtin mappings on sample files ------------------------------------------------------


def test_builtin_connectors_are_shipped_and_compile():
    assert builtin_connectors() == [
        "crm_contacts",
        "pos_transactions",
        "segment_jsonl",
        "shopify_orders",
    ]
    for name in builtin_connectors():
        assert load_connector(name).name == name


def test_crm_contacts_csv_maps_reserved_traits_and_reports_bad_rows_by_line():
    mapped, failed = by_line(run("crm_contacts", "crm_contacts.csv"))
    assert sorted(mapped) == [2, 3, 8]  # line 3's street spans lines 3–4
    assert sorted(failed) == [5, 6, 7]
    assert failed[5].field == "$.email"
    assert failed[5].message == "email: not an email address: 'not-an-email'"
    assert failed[6].field == "$.contact_id"
    assert "required" in failed[6].message
    assert failed[7].field == "$.birthday"
    assert "ISO 8601 date" in failed[7].message

    (ann,) = mapped[2]
    valid(ann)
    assert ann["type"] == "identify"
    assert ann["anonymousId"] == "crm:C-1001"
    assert ann["timestamp"] == "2024-04-30T09:00:00.000Z"
    assert ann["traits"] == {
        "crm_id": "C-1001",
        "email": "ann.lee@example.com",
        "phone": "6135550101",
        "firstName": "Ann",
        "lastName": "Lee",
        "name": "Ann Lee",
        "birthday": "1985-03-14",
        "company": {"name": "Acme"},
        "address": {
            "street": "1 Main St, Apt 2",
            "city": "Ottawa",
            "postalCode": "K1A 0B1",
            "state": "ON",
            "country": "CA",
        },
    }
    assert ann["context"]["externalIds"] == [
        {"id": "C-1001", "type": "crm_id", "collection": "users", "encoding": "none"}
    ]
    (bruno,) = mapped[3]
    assert bruno["traits"]["address"]["street"] == "Calle Mayor 5\nPiso 3"
    assert bruno["traits"]["phone"] == "+34600123456"
    assert bruno["timestamp"] == "2024-04-30T10:30:00.000Z"
    assert "birthday" not in bruno["traits"]
    (femi,) = mapped[8]
    assert femi["timestamp"] == "2024-05-01T07:00:00.000Z"


def test_crm_contacts_json_export_with_full_names_and_a_user_id():
    mapped, failed = by_line(run("crm_contacts", "crm_contacts.json"))
    assert sorted(mapped) == [1, 2]
    assert failed[3].field == "$.phone"
    assert failed[4].message == "a row must be a JSON object"
    (grace,) = mapped[1]
    valid(grace)
    assert grace["userId"] == "u-2001"
    assert grace["anonymousId"] == "crm:2001"
    assert grace["traits"]["firstName"] == "Grace"
    assert grace["traits"]["lastName"] == "Hopper"
    assert grace["traits"]["address"]["postalCode"] == "22201"
    (harper,) = mapped[2]
    assert (harper["traits"]["firstName"], harper["traits"]["lastName"]) == ("Harper", "Lee")
    assert "userId" not in harper


def test_shopify_order_becomes_identify_and_order_completed_with_products():
    chunk = run("shopify_orders", "shopify_order.json")
    assert chunk.failed == []
    [(line, [identify, order])] = chunk.mapped
    assert line == 1
    valid(identify)
    valid(order)
    assert identify["anonymousId"] == "shopify:115310627314723954"
    assert "userId" not in identify
    assert identify["traits"]["email"] == "jon@example.com"
    assert identify["traits"]["phone"] == "+16135550111"
    assert identify["traits"]["address"] == {
        "street": "123 Elm St, Unit 4",
        "city": "Ottawa",
        "postalCode": "K2P 1L4",
        "state": "ON",
        "country": "CA",
    }
    assert order["event"] == "Order Completed"
    assert order["messageId"] == "shopify_orders:order:820982911946154508"
    assert order["timestamp"] == "2024-05-01T14:15:02.000Z"
    props = order["properties"]
    assert props["order_id"] == "820982911946154508"
    assert (props["total"], props["revenue"], props["tax"]) == (418.85, 398.0, 11.94)
    assert (props["shipping"], props["discount"], props["coupon"]) == (18.91, 10.0, "SPRING10")
    assert props["currency"] == "USD"
    assert props["products"] == [
        {
            "product_id": "632910392",
            "variant": "Pink",
            "sku": "IPOD2008PINK",
            "name": "IPod Nano - 8GB",
            "brand": "Apple",
            "price": 199.0,
            "quantity": 1,
        },
        {
            "product_id": "632910393",
            "variant": "808950811",
            "sku": "CASE-01",
            "name": "Leather Case",
            "brand": "Acme",
            "price": 99.5,
            "quantity": 2,
        },
    ]
    assert order["context"]["externalIds"][0]["type"] == "shopify_customer_id"


def test_shopify_user_id_from_customer_is_a_parameter():
    chunk = run("shopify_orders", "shopify_order.json", user_id_from_customer=True)
    [(_, messages)] = chunk.mapped
    assert {m["userId"] for m in messages} == {"115310627314723954"}
    with pytest.raises(ConfigError, match="no parameter 'nope'"):
        load_connector("shopify_orders", {"nope": 1})


def test_shopify_order_id_is_stable_while_the_order_changes():
    order = msgspec.json.decode((DATA / "shopify_order.json").read_bytes())
    connector = load_connector("shopify_orders")
    [(_, first)] = connector.map(msgspec.json.encode(order)).mapped
    order["customer"]["first_name"] = "Jonathan"
    [(_, second)] = connector.map(msgspec.json.encode(order)).mapped
    assert first[1]["messageId"] == second[1]["messageId"]  # one order, counted once
    assert first[0]["messageId"] != second[0]["messageId"]  # the new name is applied


def test_shopify_bad_line_item_names_the_field():
    order = msgspec.json.decode((DATA / "shopify_order.json").read_bytes())
    order["line_items"][1]["price"] = "free"
    chunk = load_connector("shopify_orders").map(msgspec.json.encode(order))
    [(line, _, error)] = chunk.failed
    assert line == 1
    assert error.field == "$.line_items[1].price"
    assert "amount of money" in error.message


def test_pos_transactions_csv():
    mapped, failed = by_line(run("pos_transactions", "pos_transactions.csv"))
    assert sorted(mapped) == [2, 3]
    assert {line: e.field for line, e in failed.items()} == {
        4: "$.loyalty_id",
        5: "$.items[0].quantity",
        6: "$.store",
        7: "$.amount",
    }
    assert "a loyalty_id or an email is required" in failed[4].message
    identify, order = mapped[2]
    valid(identify)
    valid(order)
    assert identify["anonymousId"] == order["anonymousId"] == "pos:L-77"
    assert identify["traits"] == {"loyalty_id": "L-77"}
    assert identify["context"]["externalIds"][0]["type"] == "loyalty_id"
    assert order["timestamp"] == "2024-05-01T07:12:00.000Z"
    assert order["properties"] == {
        "order_id": "T-1",
        "store_id": "store-berlin-01",
        "affiliation": "POS",
        "total": 19.0,
        "revenue": 19.0,
        "currency": "EUR",
        "products": [
            {"product_id": "SKU-1", "sku": "SKU-1", "quantity": 2, "price": 4.5},
            {"product_id": "SKU-2", "sku": "SKU-2", "quantity": 1, "price": 10.0},
        ],
    }
    mia_identify, mia_order = mapped[3]
    assert mia_identify["anonymousId"] == "pos:mia@example.com"
    assert mia_identify["traits"]["email"] == "mia@example.com"
    assert mia_order["properties"]["total"] == 12.5
    assert mia_order["properties"]["products"][0]["price"] == 12.5


def test_segment_jsonl_passes_messages_through_and_numbers_lines():
    mapped, failed = by_line(run("segment_jsonl", "events.jsonl"))
    assert sorted(mapped) == [1, 2, 4, 5, 7, 8]  # line 3 is blank
    assert sorted(failed) == [6]
    assert failed[6].code == "invalid_json"
    assert mapped[1][0]["messageId"] == "seg-1"
    page = mapped[4][0]
    assert page["messageId"].startswith("segment_jsonl:-:message:")
    again = dict(run("segment_jsonl", "events.jsonl").mapped)
    assert again[4][0]["messageId"] == page["messageId"]


def test_message_ids_are_deterministic_per_row_content():
    first = dict(run("crm_contacts", "crm_contacts.csv").mapped)
    second = dict(run("crm_contacts", "crm_contacts.csv").mapped)
    assert first == second
    ids = [m["messageId"] for messages in first.values() for m in messages]
    assert len(set(ids)) == len(ids)
    assert ids[0].startswith("crm_contacts:C-1001:contact:")


# --- chunks ---------------------------------------------------------------------------------


def test_a_csv_chunk_with_its_header_numbers_rows_as_the_whole_file():
    lines = (DATA / "pos_transactions.csv").read_bytes().splitlines(keepends=True)
    header, rows = lines[0], lines[1:]
    connector = load_connector("pos_transactions")
    whole = connector.map(b"".join(lines))
    first = connector.map(header + b"".join(rows[:3]), first_line=2)
    second = connector.map(header + b"".join(rows[3:]), first_line=5)
    assert [line for line, _ in first.mapped + second.mapped] == [line for line, _ in whole.mapped]
    assert [f[0] for f in first.failed + second.failed] == [f[0] for f in whole.failed]
    assert [f[0] for f in second.failed] == [5, 6, 7]


def test_format_is_sniffed_among_the_connectors_formats():
    assert sniff_format(b'[{"a": 1}]', ("json", "jsonl")) == "json"
    assert sniff_format(b'{"a": 1}\n{"a": 2}\n', ("json", "jsonl")) == "jsonl"
    assert sniff_format(b'{\n  "a": 1\n}\n', ("json", "jsonl")) == "json"
    assert sniff_format(b"a,b\n1,2\n", ("csv", "json")) == "csv"
    assert sniff_format(b"a,b\n", ("jsonl",)) == "jsonl"
    with pytest.raises(InvalidInput) as caught:
        load_connector("shopify_orders").map(b"a,b\n", fmt="csv")
    assert caught.value.field == "format"


def test_csv_reader_reports_broken_rows_and_refuses_a_header_with_a_column_twice():
    data = b'id,name\n1,"ok"\n2,"bro"ken\n3,a,extra\n4,\xff\n'
    rows = list(read_rows(data, "csv", 2))
    assert [(r.line, r.error is None) for r in rows] == [
        (2, True),
        (3, False),
        (4, False),
        (5, False),
    ]
    assert rows[3].raw == b"4,\xff"
    with pytest.raises(InvalidInput, match="names id twice"):
        list(read_rows(b"id,id\n1,2\n", "csv", 2))


def test_unknown_builtin_names_are_input_errors_and_never_paths():
    for name in ("nope", "../crm_contacts", "/etc/passwd.yaml"):
        with pytest.raises(InvalidInput) as caught:
            load_connector(name)
        assert caught.value.code == "unknown_connector"


def test_a_mapping_file_by_path(tmp_path):
    path = tmp_path / "newsletter.yaml"
    path.write_text(
        "name: newsletter\n"
        "input: {formats: [csv]}\n"
        "messages:\n"
        "  - type: track\n"
        "    event: Newsletter Subscribed\n"
        "    anonymousId: 'nl:{email}'\n"
        "    properties: {list: {path: list, default: weekly}}\n"
    )
    connector = load_connector(str(path), allow_files=True)
    [(_, [message])] = connector.map(b"email\nx@y.z\n").mapped
    assert message["properties"] == {"list": "weekly"}
    assert message["anonymousId"] == "nl:x@y.z"


def test_settings_need_a_connector_for_webhook_secret_and_options():
    with pytest.raises(ConfigError, match="need a connector"):
        load_settings(None, {}, {"sources": [{"name": "s", "webhook_secret": "x"}]})
    settings = load_settings(
        None,
        {},
        {"sources": [{"name": "s", "connector": "pos_transactions", "webhook_secret": "x"}]},
    )
    assert settings.sources[0].connector == "pos_transactions"


# --- the mapping language -------------------------------------------------------------------


def mapping(messages, **top):
    return compile_mapping(
        {"name": "t", "input": {"formats": ["json"]}, "messages": messages, **top}, "t.yaml"
    )


def test_every_problem_of_a_mapping_file_is_reported_at_once():
    with pytest.raises(ConfigError) as caught:
        mapping(
            [
                {"type": "track", "anonymousId": "{id}"},
                {
                    "type": "identify",
                    "propeties": {},
                    "userId": {"path": "id", "transform": ["lowr"]},
                    "traits": {"a": {"path": "x", "first": ["y"]}, "b": "{$nope}"},
                },
                {"type": "teleport"},
            ],
            extra=1,
        )
    text = "\n".join(caught.value.problems)
    for expected in (
        "unknown key 'extra'",
        "a track needs an event",
        "unknown message field 'propeties'",
        "unknown transform 'lowr'",
        "use one of first, path, not several",
        "unknown variable $nope",
        "type must be one of",
    ):
        assert expected in text
    assert all(p.startswith("t.yaml: ") for p in caught.value.problems)


def test_templates_keep_types_when_whole_and_are_absent_when_a_value_is():
    m = mapping(
        [
            {
                "type": "track",
                "event": "E",
                "anonymousId": "a:{id}",
                "properties": {
                    "n": "{n}",
                    "text": "n={n}",
                    "missing": "x-{nope}",
                    "braces": "{{literal}}",
                    "nested": {"deep": "{a.b.0}"},
                    "list": ["{n}", "{nope}", 3],
                    "empty": {"x": "{nope}"},
                    "line": "{$line}",
                },
            }
        ]
    )
    [message] = m.apply({"id": 7, "n": 2.0, "a": {"b": ["first"]}}, 12)
    assert message["anonymousId"] == "a:7"
    assert message["properties"] == {
        "n": 2.0,
        "text": "n=2",
        "braces": "{literal}",
        "nested": {"deep": "first"},
        "list": [2.0, 3],
        "line": 12,
    }


def test_when_first_join_default_and_required():
    m = mapping(
        [
            {
                "name": "only_vip",
                "type": "identify",
                "when": {"path": "vip", "transform": ["bool"]},
                "userId": {"first": ["{uid}", {"path": "email", "transform": ["email"]}]},
                "traits": {
                    "street": {"join": ["{a1}", "{a2}"], "sep": " / "},
                    "tier": {"path": "tier", "default": "basic"},
                    "id": {"path": "id", "required": True},
                },
            }
        ]
    )
    assert m.apply({"vip": "no", "id": 1}, 2) == []
    [message] = m.apply({"vip": "yes", "email": " A@B.CO ", "a2": "x", "id": 1}, 2)
    assert message["userId"] == "a@b.co"
    assert message["traits"] == {"street": "x", "tier": "basic", "id": 1}
    with pytest.raises(InvalidInput) as caught:
        m.apply({"vip": "yes", "uid": "u"}, 2)
    assert (caught.value.field, caught.value.message) == (
        "$.id",
        "id is required but missing or empty",
    )
    with pytest.raises(InvalidInput) as caught:
        m.apply({"vip": "maybe"}, 2)
    assert caught.value.field == "$.vip"


def test_each_over_text_with_named_fields():
    m = mapping(
        [
            {
                "type": "track",
                "event": "E",
                "userId": "u",
                "properties": {
                    "items": {
                        "each": "items",
                        "split": "|",
                        "fields": ["sku", "qty"],
                        "item": {"sku": "{sku}", "qty": {"path": "qty", "transform": ["int"]}},
                    }
                },
            }
        ]
    )
    [message] = m.apply({"items": "a:1 | b | "}, 2)
    assert message["properties"]["items"] == [{"sku": "a", "qty": 1}, {"sku": "b"}]
    with pytest.raises(InvalidInput) as caught:
        m.apply({"items": "a:1:2"}, 2)
    assert caught.value.field == "$.items[0]"


@pytest.mark.parametrize(
    ("text", "amount"),
    [
        ("$1,234.50", 1234.5),
        ("1.234,50 €", 1234.5),
        ("€ 1 234,56", 1234.56),
        ("(12.00)", -12.0),
        ("-$3", -3.0),
        ("USD 12.00", 12.0),
        ("12,5", 12.5),
        ("1,234", 1234.0),
        ("0.5", 0.5),
        ("1.234.567,89", 1234567.89),
        ("1,23,456.00", 123456.0),
        (9, 9.0),
    ],
)
def test_money(text, amount):
    assert money(text) == amount


@pytest.mark.parametrize(
    "text", ["abc", "12abc", "1-2", "--3", True, "", "1,2.3,4", "12,34,5", "1.2345.678"]
)
def test_money_refuses_what_is_not_money(text):
    with pytest.raises(ValueError, match="amount of money"):
        money(text)


@pytest.mark.parametrize(
    ("spec", "value", "expected"),
    [
        ("datetime", "2024-05-01T10:15:00-04:00", "2024-05-01T14:15:00.000Z"),
        ("datetime", "2024-05-01", "2024-05-01T00:00:00.000Z"),
        ("datetime", 1714557600, "2024-05-01T10:00:00.000Z"),
        ("datetime", 1714557600000, "2024-05-01T10:00:00.000Z"),
        ({"datetime": "%d/%m/%Y %H:%M"}, "01/05/2024 10:30", "2024-05-01T10:30:00.000Z"),
        ("date", "2024-05-01T23:30:00-04:00", "2024-05-01"),
        ({"split_name": "first"}, "Ann  Marie Smith", "Ann"),
        ({"split_name": "last"}, "Ann Marie Smith", "Marie Smith"),
        ({"split_name": "first"}, "Smith, Ann", "Ann"),
        ("phone", "0049 (30) 123-4567", "+49301234567"),
        ("int", "2.0", 2),
        ("int", "12345678901234567890", 12345678901234567890),
        ("number", "2.5", 2.5),
        ("bool", "Yes", True),
        ({"map": {"1": "gold"}}, 1, "gold"),
        ({"prefix": "x:"}, 5, "x:5"),
        ("trim", "   ", None),
    ],
)
def test_transforms(spec, value, expected):
    assert build_transform(spec)(value) == expected


@pytest.mark.parametrize(
    ("spec", "value"),
    [("int", "2.5"), ("int", "1_000"), ("number", "nan"), ("date", "31/02/1990"), ("phone", "x")],
)
def test_transforms_refuse_bad_values(spec, value):
    with pytest.raises(ValueError, match=r"expected|not a"):
        build_transform(spec)(value)


# --- into the pipeline ----------------------------------------------------------------------


class FrozenClock:
    def now(self) -> float:
        return 1_714_557_600.0


def test_collect_rows_stores_dedupes_and_quarantines_by_line():
    async def scenario():
        log, quarantine = MemoryEventLog(), MemoryQuarantine()
        await log.open()
        await quarantine.open()
        ingest = IngestService(log, quarantine, FrozenClock(), Limits())
        chunk = run("segment_jsonl", "events.jsonl")
        first = await ingest.collect_rows("files", chunk.mapped, chunk.failed)
        again = await ingest.collect_rows("files", chunk.mapped, chunk.failed)
        entries = await quarantine.list(None, 0, 100)
        return first, again, entries, await log.last_offset()

    first, again, entries, head = asyncio.run(scenario())
    assert (first.rows, first.stored, first.duplicates) == (7, 4, 0)
    assert [(r.line, r.code) for r in first.rejected] == [
        (5, "invalid_event"),
        (6, "invalid_json"),
        (7, "invalid_event"),
    ]
    assert first.rejected[0].field == "$.event"
    assert (again.stored, again.duplicates) == (0, 4)
    assert head == 4
    reasons = [e.reason for e in entries[:3]]
    assert reasons[0].startswith("line 5: invalid_event: ")
    assert reasons[1].startswith("line 6: invalid_json: ")
    assert entries[1].body.startswith(b'{"type": "track", "userId": "u-2", "event"')
    assert all(e.source == "files" for e in entries)
