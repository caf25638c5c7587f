"""The partner integration guide's examples (docs/partners.md) run as written — curl in bash,
Python, Node.js and the network form — against the whole stack, and answer what the guide says."""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import shutil
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import sign_up

pytestmark = pytest.mark.e2e

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "partners.md"
EXAMPLE = re.compile(r"<!-- example: (?P<name>[a-z]+) -->\n```(?P<lang>[a-z]+)\n(?P<code>.*?)\n```", re.DOTALL)


def examples() -> dict[str, tuple[str, str]]:
    return {m["name"]: (m["lang"], m["code"]) for m in EXAMPLE.finditer(GUIDE.read_text(encoding="utf-8"))}


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict


async def run(name: str, workdir: Path, env: dict[str, str]) -> Answer:
    """Runs the guide's example `name` as a partner would, with `env` as its variables; the answer
    it prints ("<status> <json>" or "<json> <status>")."""
    lang, code = examples()[name]
    suffix, command = {"sh": (".sh", ["bash"]), "python": (".py", [sys.executable]),
                       "js": (".mjs", [shutil.which("node") or "node"])}[lang]
    script = workdir / f"{name}-{uuid.uuid4().hex[:6]}{suffix}"
    script.write_text(code + "\n", encoding="utf-8")
    process = await asyncio.create_subprocess_exec(
        *command, str(script), cwd=workdir, env={"PATH": os.environ["PATH"], **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, f"{name} exited {process.returncode}: {err.decode()}"
    line = out.decode().strip()
    found = re.fullmatch(r"(\d{3}) (\{.*\})|(\{.*\}) (\d{3})", line)
    assert found, f"{name} printed {line!r}"
    return Answer(int(found[1] or found[4]), json.loads(found[2] or found[3]))


def test_the_guide_has_every_example_the_test_runs():
    assert set(examples()) == {"curl", "python", "node", "admitad"}
    assert shutil.which("node") and shutil.which("curl") and shutil.which("openssl"), "make tools installs them"


async def test_the_guides_examples_report_orders_as_the_guide_says(http: httpx.AsyncClient, stack, tmp_path):
    member = await sign_up(http, f"+7903{random.randint(0, 9_999_999):07d}")
    auth = {"Authorization": f"Bearer {member['access_token']}"}
    click = (await http.post("/v1/partners/ozon/clicks", headers=auth)).json()["click_id"]
    base = {"GW": stack.gateway_url, "CLICK_ID": click}
    orders = {name: f"DOC-{name}-{uuid.uuid4().hex[:8]}" for name in ("curl", "python", "node", "admitad", "none")}
    at = (datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)).isoformat()  # before `later`

    # Each example reports a new order: applied.
    for name in ("curl", "python", "node", "admitad"):
        answer = await run(name, tmp_path, base | {"ORDER_ID": orders[name], "EVENT_TIME": at})
        assert (answer.status, answer.body["outcome"]) == (200, "ACCEPTED"), name
        assert answer.body["purchase_id"]
    # The same report again (a retry, signed anew): a duplicate, safe.
    again = await run("curl", tmp_path, base | {"ORDER_ID": orders["curl"], "EVENT_TIME": at})
    assert (again.status, again.body["outcome"]) == (200, "DUPLICATE")
    # The order is approved later.
    later = datetime.now(UTC).replace(microsecond=0).isoformat()
    approved = await run("python", tmp_path,
                         base | {"ORDER_ID": orders["python"], "STATUS": "approved", "EVENT_TIME": later})
    assert (approved.status, approved.body["outcome"]) == (200, "ACCEPTED")
    # No click id: stored, unattributed.
    lost = await run("node", tmp_path, base | {"CLICK_ID": "", "ORDER_ID": orders["none"]})
    assert (lost.status, lost.body["outcome"]) == (200, "UNATTRIBUTED")
    # Refusals are final: a wrong secret, a malformed report.
    forged = await run("python", tmp_path, base | {"ORDER_ID": orders["python"], "SECRET": "not-our-secret"})
    assert (forged.status, forged.body["code"]) == (401, "SIGNATURE_INVALID")
    malformed = await run("node", tmp_path, base | {"ORDER_ID": orders["node"], "STATUS": "shipped"})
    assert (malformed.status, malformed.body["code"]) == (400, "POSTBACK_MALFORMED")
    unknown = await run("admitad", tmp_path, base | {"ORDER_ID": orders["admitad"], "NETWORK_SECRET": "x"})
    assert (unknown.status, unknown.body["code"]) == (401, "SIGNATURE_INVALID")

    # The member sees the reported orders, with the status the reports gave them.
    purchases = (await http.get("/v1/me/purchases", headers=auth, params={"page_size": 100})).json()["purchases"]
    status = {p["order_id"]: p["status"] for p in purchases}
    assert {status[orders[n]] for n in ("curl", "node", "admitad")} == {"PENDING"}
    assert status[orders["python"]] in {"CONFIRMED", "ACCRUED"}
    assert orders["none"] not in status
