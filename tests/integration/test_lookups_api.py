"""/api/v1/lookups: CRUD, types, CSV and Excel import/export, tenant isolation, and the
cached resolver the SIMPLE ``lookup`` transformer reads through."""

from __future__ import annotations

import csv
import io
from contextlib import asynccontextmanager
from typing import Any

import openpyxl
from tests.support import World

from junctionbox.domain.identity import Entity, Principal, PrincipalKind, Role, TenantContext
from junctionbox.domain.paging import PageRequest
from junctionbox.errors import ServiceUnavailableError
from junctionbox.expr import compile_transformer
from junctionbox.services.lookups import LookupService

LOOKUPS = "/api/v1/lookups"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


async def create(world: World, body: dict[str, Any], caller: str = "user_a", org: int = 100):
    return await world.client.post(
        f"{LOOKUPS}?orgId={org}", json=body, headers=world.headers[caller]
    )


async def entries(world: World, caller: str = "user_a", **params: Any) -> list[dict[str, Any]]:
    params = {"orgId": 100, "limit": 500, **params}
    response = await world.client.get(LOOKUPS, params=params, headers=world.headers[caller])
    assert response.status_code == 200, response.text
    return list(response.json()["lookups"])


async def upload(
    world: World,
    content: bytes,
    *,
    name: str = "table.csv",
    mime: str = "text/csv",
    caller: str = "user_a",
    **params: Any,
):
    params = {"orgId": 100, **params}
    return await world.client.post(
        f"{LOOKUPS}/import",
        params=params,
        files={"file": (name, content, mime)},
        headers=world.headers[caller],
    )


def xlsx(rows: list[list[Any]]) -> bytes:
    book = openpyxl.Workbook()
    sheet = book.active
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def as_map(items: list[dict[str, Any]]) -> dict[tuple[str, str], tuple[str, str | None]]:
    return {(i["type"], i["key"]): (i["value"], i["description"]) for i in items}


async def test_crud_with_conflicts_types_and_bulk_delete(world: World) -> None:
    http, user = world.client, world.headers["user_a"]
    created = await create(world, {"type": "GENDER", "key": " M ", "value": "Male"})
    assert created.status_code == 201, created.text
    entry = created.json()
    assert (entry["type"], entry["key"], entry["value"]) == ("GENDER", "M", "Male")
    assert entry["orgId"] == 100
    assert entry["id"].startswith("lkp_")
    again = await create(world, {"type": "GENDER", "key": "M", "value": "Other"})
    assert again.status_code == 409
    assert again.json()["code"] == "CONFLICT"
    other = (await create(world, {"type": "GENDER", "key": "F", "value": "Female"})).json()
    await create(world, {"type": "STATUS", "key": "1", "value": "Active", "description": "d"})

    got = await http.get(f"{LOOKUPS}/{entry['id']}?orgId=100", headers=user)
    assert got.json() == entry
    assert len(await entries(world)) == 3
    assert [e["key"] for e in await entries(world, type="GENDER")] == ["F", "M"]
    assert [e["value"] for e in await entries(world, search="act")] == ["Active"]
    paged = (await http.get(f"{LOOKUPS}?orgId=100&limit=2&page=1", headers=user)).json()
    assert (paged["total"], paged["hasMore"], len(paged["lookups"])) == (3, True, 2)

    patched = await http.patch(
        f"{LOOKUPS}/{entry['id']}?orgId=100", json={"value": "Man"}, headers=user
    )
    assert patched.json()["value"] == "Man"
    assert patched.json()["key"] == "M"
    clash = await http.patch(f"{LOOKUPS}/{entry['id']}?orgId=100", json={"key": "F"}, headers=user)
    assert clash.status_code == 409
    null_key = await http.patch(
        f"{LOOKUPS}/{entry['id']}?orgId=100", json={"key": None}, headers=user
    )
    assert null_key.status_code == 400
    put = await http.put(
        f"{LOOKUPS}/{other['id']}?orgId=100",
        json={"type": "SEX", "key": "F", "value": "Female", "description": "moved"},
        headers=user,
    )
    assert put.status_code == 200
    assert put.json()["type"] == "SEX"

    types = (await http.get(f"{LOOKUPS}/types?orgId=100", headers=user)).json()["types"]
    assert [(t["type"], t["count"]) for t in types] == [("GENDER", 1), ("SEX", 1), ("STATUS", 1)]

    deleted = await http.delete(f"{LOOKUPS}/{entry['id']}?orgId=100", headers=user)
    assert deleted.status_code == 204
    gone = await http.get(f"{LOOKUPS}/{entry['id']}?orgId=100", headers=user)
    assert gone.status_code == 404
    bulk = await http.delete(f"{LOOKUPS}?orgId=100&type=SEX", headers=user)
    assert bulk.json() == {"type": "SEX", "deleted": 1}
    assert (await http.delete(f"{LOOKUPS}?orgId=100&type=SEX", headers=user)).status_code == 404
    assert [e["type"] for e in await entries(world)] == ["STATUS"]


async def test_invalid_entries_are_400_with_the_field(world: World) -> None:
    for body, field in (
        ({"type": "has space", "key": "k", "value": "v"}, "type"),
        ({"type": "T", "key": "   ", "value": "v"}, "key"),
        ({"type": "T", "key": "k", "value": ""}, "value"),
        ({"type": "T", "key": "k", "value": "v\x00"}, "value"),
        ({"type": "T", "key": "k", "value": "v", "bogus": 1}, "bogus"),
    ):
        response = await create(world, body)
        assert response.status_code == 400, body
        assert ["body", field] in [d["loc"] for d in response.json()["details"]], body


async def test_mutations_are_audited(world: World) -> None:
    entry = (await create(world, {"type": "T", "key": "k", "value": "v"})).json()
    await upload(world, b"key,value\nk2,v2\n", type="T")
    logs = (
        await world.client.get(
            "/api/v1/admin/audit-logs?orgId=100&resourceType=lookup",
            headers=world.headers["admin"],
        )
    ).json()["auditLogs"]
    assert [(a["action"], a["resourceId"]) for a in logs] == [("lookup.create", entry["id"])]
    imports = (
        await world.client.get(
            "/api/v1/admin/audit-logs?orgId=100&action=lookup.import",
            headers=world.headers["admin"],
        )
    ).json()["auditLogs"]
    assert imports[0]["after"]["created"] == 1


async def test_another_tenant_never_sees_or_changes_the_entries(world: World) -> None:
    entry = (await create(world, {"type": "T", "key": "k", "value": "secret"})).json()
    http = world.client
    for caller in ("user_b", "key_b"):
        headers = world.headers[caller]
        assert await entries(world, caller, orgId=200) == []
        types = (await http.get(f"{LOOKUPS}/types?orgId=200", headers=headers)).json()
        assert types == {"types": []}
        path = f"{LOOKUPS}/{entry['id']}?orgId=200"
        assert (await http.get(path, headers=headers)).status_code == 404
        patched = await http.patch(path, json={"value": "x"}, headers=headers)
        assert patched.status_code == 404
        assert (await http.delete(path, headers=headers)).status_code == 404
        assert (await http.get(f"{LOOKUPS}?orgId=100", headers=headers)).status_code == 404
        export = await http.get(f"{LOOKUPS}/export?orgId=200&type=T", headers=headers)
        assert export.text.strip() == "key,value,description"
        resolved = await http.get(f"{LOOKUPS}/resolve?orgId=200&type=T&key=k", headers=headers)
        assert resolved.json()["found"] is False
        bulk = await http.delete(f"{LOOKUPS}?orgId=200&type=T", headers=headers)
        assert bulk.status_code == 404
    same_key = await create(world, {"type": "T", "key": "k", "value": "theirs"}, "user_b", 200)
    assert same_key.status_code == 201
    assert [e["value"] for e in await entries(world)] == ["secret"]


async def test_csv_import_merge_and_replace_then_export_round_trip(world: World) -> None:
    await create(world, {"type": "COLOR", "key": "r", "value": "old red"})
    await create(world, {"type": "COLOR", "key": "x", "value": "kept by merge"})
    merged = await upload(
        world,
        b"Key;Value;Description\r\nr;red;primary\r\ng;green;\r\n\r\nb;=1+2;formula-like\r\n",
        type="COLOR",
    )
    assert merged.status_code == 200, merged.text
    assert merged.json() == {
        "types": ["COLOR"],
        "mode": "merge",
        "rows": 3,
        "created": 2,
        "updated": 1,
        "deleted": 0,
    }
    assert as_map(await entries(world)) == {
        ("COLOR", "b"): ("=1+2", "formula-like"),
        ("COLOR", "g"): ("green", None),
        ("COLOR", "r"): ("red", "primary"),
        ("COLOR", "x"): ("kept by merge", None),
    }

    no_descriptions = await upload(world, b"key,value\nr,RED\n", type="COLOR")
    assert no_descriptions.json()["updated"] == 1
    assert as_map(await entries(world))[("COLOR", "r")] == ("RED", "primary")  # kept

    snapshot = as_map(await entries(world))
    exported = await world.client.get(
        f"{LOOKUPS}/export?orgId=100&type=COLOR&format=csv", headers=world.headers["user_a"]
    )
    assert exported.headers["content-type"].startswith("text/csv")
    assert "lookups-100-COLOR.csv" in exported.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(exported.text)))
    assert rows[0] == ["key", "value", "description"]
    assert rows[1] == ["b", "'=1+2", "formula-like"]  # defused in the file

    replaced = await upload(world, exported.content, type="COLOR", mode="replace")
    assert replaced.json()["deleted"] == 4
    assert replaced.json()["created"] == 4
    assert as_map(await entries(world)) == snapshot  # the round trip is exact

    only = await upload(world, b"key,value\nr,rouge\n", type="COLOR", mode="replace")
    assert only.json()["deleted"] == 4
    assert as_map(await entries(world)) == {("COLOR", "r"): ("rouge", None)}


async def test_export_of_all_types_reimports_with_its_type_column(world: World) -> None:
    await create(world, {"type": "A", "key": "1", "value": "one"})
    await create(world, {"type": "B", "key": "1", "value": "uno", "description": "it"})
    user = world.headers["user_a"]
    exported = await world.client.get(f"{LOOKUPS}/export?orgId=100", headers=user)
    rows = list(csv.reader(io.StringIO(exported.text)))
    assert rows == [
        ["type", "key", "value", "description"],
        ["A", "1", "one", ""],
        ["B", "1", "uno", "it"],
    ]
    into_unit = await upload(world, exported.content, orgId=101)
    assert into_unit.json()["types"] == ["A", "B"]
    assert as_map(await entries(world, orgId=101)) == as_map(await entries(world))


async def test_xlsx_import_and_export_round_trip(world: World) -> None:
    workbook = xlsx(
        [
            ["key", "value", "description"],
            [1, "Active", None],
            [2.0, 3.5, "numbers become text"],
            ["f", "=SUM(A1:A2)", None],  # a formula without a cached result
        ]
    )
    refused = await upload(world, workbook, name="t.xlsx", mime=XLSX, type="S")
    assert refused.status_code == 400
    assert ["file", "row 4", "value"] in [d["loc"] for d in refused.json()["details"]]

    good = xlsx([["Key", "Value", "Description"], [1, "Active", None], [2.0, 3.5, "n"]])
    imported = await upload(world, good, name="t.xlsx", mime=XLSX, type="S")
    assert imported.status_code == 200, imported.text
    assert as_map(await entries(world)) == {("S", "1"): ("Active", None), ("S", "2"): ("3.5", "n")}
    await create(world, {"type": "S", "key": "evil", "value": '=HYPERLINK("x")'})

    exported = await world.client.get(
        f"{LOOKUPS}/export?orgId=100&type=S&format=xlsx", headers=world.headers["user_a"]
    )
    assert exported.headers["content-type"] == XLSX
    sheet = openpyxl.load_workbook(io.BytesIO(exported.content)).worksheets[0]
    cells = [[c.value for c in row] for row in sheet.iter_rows()]
    assert cells[0] == ["key", "value", "description"]
    assert ["evil", '=HYPERLINK("x")', None] in cells
    assert all(c.data_type == "s" for row in sheet.iter_rows(min_row=2) for c in row if c.value)

    again = await upload(
        world, exported.content, name="t.xlsx", mime=XLSX, type="S", mode="replace"
    )
    assert again.json()["created"] == 3
    assert as_map(await entries(world))[("S", "evil")] == ('=HYPERLINK("x")', None)


async def test_bad_imports_name_the_row_and_import_nothing(world: World) -> None:
    await create(world, {"type": "T", "key": "keep", "value": "me"})
    before = as_map(await entries(world))
    cases = [
        (b"key,value\na,1\n,2\nc,3\n", ["file", "row 3", "key"]),
        (b"key,value\na,1\nb,\n", ["file", "row 3", "value"]),
        (b"key,value\na,1\nb,2\na,3\n", ["file", "row 4", "key"]),
        (b"key,valeur\na,1\n", ["file", "row 1"]),
        (b"key\na\n", ["file", "row 1"]),
        (b"key,value\n", ["file", "row 2"]),
        (b"", ["file", "row 1"]),
        (b"key,value\na,1\nb,2,extra\n", ["file", "row 3"]),
        (b"key,value\na,1\nb,\xff\xfe\n", ["file", "row 3"]),
        (b'key,value\na,1\n"b,2\n', ["file", "row 3"]),
    ]
    for content, loc in cases:
        response = await upload(world, content, type="T", mode="replace")
        assert response.status_code == 400, (content, response.text)
        body = response.json()
        assert body["code"] == "VALIDATION_ERROR"
        assert loc in [d["loc"] for d in body["details"]], (content, body)
        assert loc[1] in body["error"], body["error"]
    no_type = await upload(world, b"key,value\na,1\n")
    assert ["file", "row 2", "type"] in [d["loc"] for d in no_type.json()["details"]]
    assert as_map(await entries(world)) == before


async def test_import_limits_and_transports(world: World) -> None:
    http, user = world.client, world.headers["user_a"]
    world.services.lookups.import_max_rows = 2
    too_many = await upload(world, b"key,value\na,1\nb,2\nc,3\n", type="T")
    assert too_many.status_code == 400
    assert ["file", "row 4"] in [d["loc"] for d in too_many.json()["details"]]

    world.services.lookups.import_max_bytes = 100
    too_big = await upload(world, b"key,value\n" + b"k,v\n" * 50, type="T")
    assert too_big.status_code == 413
    raw_big = await http.post(
        f"{LOOKUPS}/import?orgId=100&type=T",
        content=b"key,value\n" + b"k,v\n" * 50,
        headers={**user, "content-type": "text/csv"},
    )
    assert raw_big.status_code == 413
    world.services.lookups.import_max_bytes = 1024 * 1024

    raw = await http.post(
        f"{LOOKUPS}/import?orgId=100&type=T",
        content=b"key,value\nraw,body\n",
        headers={**user, "content-type": "text/csv"},
    )
    assert raw.status_code == 200
    assert raw.json()["created"] == 1
    legacy = await upload(world, b"\xd0\xcf\x11\xe0" + b"\x00" * 100, name="t.xls", type="T")
    assert legacy.status_code == 415
    fake = await upload(world, b"key,value\n", name="t.xlsx", mime=XLSX, type="T")
    assert fake.status_code == 400
    json_body = await http.post(
        f"{LOOKUPS}/import?orgId=100&type=T", json={"key": "value"}, headers=user
    )
    assert json_body.status_code == 415
    no_file = await http.post(
        f"{LOOKUPS}/import?orgId=100&type=T",
        data={"other": "x"},
        files={"f": ("a", b"x")},
        headers=user,
    )
    assert no_file.status_code == 400
    bad_type = await upload(world, b"key,value\na,1\n", type="bad type")
    assert bad_type.status_code == 400
    bad_mode = await upload(world, b"key,value\na,1\n", type="T", mode="overwrite")
    assert bad_mode.status_code == 400


def _tenant(org_id: int, parent_id: int | None = None) -> TenantContext:
    principal = Principal(PrincipalKind.USER, "usr_test", Role.ADMIN, None)
    return TenantContext(Entity(org_id, parent_id, "t"), principal)


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class _DownDatabase:
    """A database that refuses every transaction: proves a code path made no query."""

    @asynccontextmanager
    async def read(self):
        raise ServiceUnavailableError("database unavailable")
        yield

    write = read


async def test_resolver_caches_per_tenant_and_is_invalidated_by_writes(world: World) -> None:
    clock = _Clock()
    service = LookupService(world.services.db, clock=clock, recheck_interval=5, ttl=3600)
    org, unit = _tenant(100), _tenant(101, 100)
    await service.create(org, lookup_type="G", key="M", value="Male")
    await service.create(org, lookup_type="G", key="F", value="Female")
    await service.create(unit, lookup_type="G", key="F", value="Frau")
    await service.create(_tenant(200), lookup_type="G", key="M", value="B's")

    resolver = await service.resolver(100)
    assert (resolver.resolve("G", "M"), resolver.resolve("G", "X")) == ("Male", None)
    unit_view = await service.resolver(101)
    assert (unit_view.resolve("G", "M"), unit_view.resolve("G", "F")) == ("Male", "Frau")
    assert (await service.resolver(200)).resolve("G", "F") is None
    loads = service.stats.loads

    real_db, service.db = service.db, _DownDatabase()  # type: ignore[assignment]
    for _ in range(100):  # hits: no query at all
        assert (await service.resolver(100)).resolve("G", "M") == "Male"
    clock.now += 10  # the version check is due, the database is down: stale beats failing
    assert (await service.resolver(100)).resolve("G", "M") == "Male"
    service.db = real_db
    assert service.stats.loads == loads

    await service.update(org, (await service.list(org, _page())).items[1].id, {"value": "Man"})
    assert (await service.resolver(100)).resolve("G", "M") == "Man"
    assert (await service.resolver(101)).resolve("G", "M") == "Man"  # the unit's copy too

    other_node = LookupService(world.services.db)
    await other_node.create(org, lookup_type="G", key="X", value="Diverse")
    assert (await service.resolver(100)).resolve("G", "X") is None  # within the interval
    clock.now += 6
    assert (await service.resolver(100)).resolve("G", "X") == "Diverse"
    checks = service.stats.checks
    clock.now += 6
    assert (await service.resolver(100)).resolve("G", "X") == "Diverse"
    assert service.stats.checks == checks + 1  # unchanged signature: checked, not reloaded

    loads = service.stats.loads
    clock.now += 3600
    await service.resolver(100)
    assert service.stats.loads == loads + 1  # the TTL forces a reload


async def test_import_and_api_writes_invalidate_the_shared_resolver(world: World) -> None:
    lookups = world.services.lookups
    assert (await lookups.resolver(100)).resolve("T", "a") is None
    await upload(world, b"key,value\na,1\n", type="T")
    assert (await lookups.resolver(100)).resolve("T", "a") == "1"
    resolved = await world.client.get(
        f"{LOOKUPS}/resolve?orgId=101&type=T&key=a", headers=world.headers["user_a"]
    )
    assert resolved.json() == {"type": "T", "key": "a", "value": "1", "found": True}
    await world.client.delete(f"{LOOKUPS}?orgId=100&type=T", headers=world.headers["user_a"])
    assert (await lookups.resolver(100)).resolve("T", "a") is None

    await upload(world, b"key,value\nM,Male\n", type="GENDER")
    mapping = [
        {"sourceField": "g", "targetField": "gender", "transform": "lookup", "lookupType": "GENDER"}
    ]
    transformer = compile_transformer("SIMPLE", mapping, lookups=await lookups.resolver(100))
    assert transformer.transform({"g": "M"}) == {"gender": "Male"}


def _page() -> PageRequest:
    return PageRequest(1, 50)
