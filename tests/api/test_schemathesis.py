"""Schemathesis against a real server: generated requests find no 500s and no schema violations.

The fuzzing runs on a twin of its own (the small survey) as an admin, so every operation is
reached and nothing another test reads is changed. Operations that would lock the fuzzer
out (disabling or demoting users) are left out. The report lands in test-artifacts/.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import ROOT, make_twin, sign_in, start_server
from tests.conftest import drop_schema

ARTIFACTS = ROOT / "test-artifacts" / "schemathesis"
CHECKS = "not_a_server_error,response_schema_conformance,content_type_conformance,status_code_conformance"
#: One worker: with threads, CPython 3.11 can crash inside schemathesis (cpython gh-106905).
#: Kept out of the fuzzing: user admin would sign the fuzzer itself out (tested in test_auth); the
#: live event stream never ends by itself, so each generated case would wait for its heartbeats
#: (tested with a real broker in test_live).
EXCLUDE = r"^/admin/users/\{name\}$|^/live/events$"


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("fuzz")
    settings = make_twin("test_api_fuzz", tmp, data="small")
    server = start_server(settings, tmp / "server.log")
    yield server
    server.stop()
    drop_schema(settings)


def test_schemathesis_finds_no_server_errors(fuzz_server, tmp_path: Path) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with httpx.Client(base_url=fuzz_server.url) as client:
        headers = sign_in(client, "admin")
        doc = client.get("/api", headers=headers).json()
    schema = tmp_path / "openapi.json"
    schema.write_text(json.dumps(doc))
    st = Path(sys.executable).with_name("st")
    proc = subprocess.run(
        [str(st), "run", str(schema), "--url", fuzz_server.url,
         "-H", f"Authorization: {headers['Authorization']}",
         "--checks", CHECKS, "--exclude-path-regex", EXCLUDE,
         "--phases", "examples,coverage,fuzzing", "--max-examples", "25", "--seed", "7",
         "--generation-database", "none", "--workers", "1", "--request-timeout", "60",
         "--no-color", "--report", "junit", "--report-dir", str(ARTIFACTS)],
        capture_output=True, text=True, timeout=900, check=False,
    )
    (ARTIFACTS / "output.txt").write_text(proc.stdout + proc.stderr)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:] + fuzz_server.log.read_text()[-3000:]
