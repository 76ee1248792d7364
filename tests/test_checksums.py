"""Checksum verdicts that tell the truth, on hashes computed the way the Health Export API computes them.

``payload_hash`` is the SHA-256 of the bytes the API received or of its own serde serialisation of
the internal form, never of jsonb's text. Each ingestion gets ``verified`` (a rendering the tool
reproduces exactly matches, and the report names it), ``unverifiable`` (none can: recovery goes on,
unless ``require_verified``) or ``mismatch`` (the rendering the API hashed was reproduced and
differs: ``checksum_mismatch``). A recovery given its preview's report refuses what changed since.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import api_schema
import pytest
import sqlalchemy as sa
from api_schema import (
    hae_body,
    metric,
    serialise,
    store_corrupted,
    store_exporter_body,
    store_internal,
    store_placeholder,
    store_wrapped,
    workout,
)
from helpers import add_user, statuses

from recovery_lib import recovery
from recovery_lib.catalogue.internal import BUILDS, HEAD
from recovery_lib.checksums import PAYLOAD_SHA256_SQL
from recovery_lib.cli import main
from recovery_lib.payload.serde import Renderer, f32_text, f64_text

DATA = Path(__file__).parent / "data" / "api"
T0 = datetime(2025, 9, 20, 6, 0, tzinfo=UTC)
UNREACHABLE = "postgresql://nobody:secret-pw@127.0.0.1:1/none"


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def run(engine, **values):
    return recovery.run_recovery(engine, progress=False, **values).to_dict()


def by_id(report: dict) -> dict[str, dict]:
    return {i["ingestion_id"]: i for i in report["ingestions"]}


def edit(engine, ingestion_id: str, sql_expression: str) -> None:
    """Change a stored value after the API hashed it (what a payload edited by hand looks like)."""
    with engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE raw_ingestions SET raw_payload = {sql_expression} WHERE id = :id"),
                     {"id": ingestion_id})


# --- the renderer ---------------------------------------------------------------------------------------


def test_the_renderer_gives_back_the_exact_bytes_the_api_hashed():
    """a.hashed_bytes.txt is what a serde_json build of the API's structs wrote for a.json."""
    api_bytes = (DATA / "a.hashed_bytes.txt").read_bytes()
    example = json.loads((DATA / "a.json").read_text(encoding="utf-8"))
    renderer = Renderer()
    for m in example["data"]["metrics"]:
        renderer.feed("metrics", dict(sorted(m.items(), key=lambda kv: (len(kv[0]), kv[0]))))  # jsonb's key order
    for w in example["data"]["workouts"]:
        renderer.feed("workouts", dict(sorted(w.items())))
    [rendering] = [r for r in renderer.finish() if r.build is HEAD]
    assert (rendering.sha256, rendering.size) == (hashlib.sha256(api_bytes).hexdigest(), len(api_bytes))
    assert serialise(example) == api_bytes


@pytest.mark.parametrize(
    ("value", "text"),
    [(72.0, "72.0"), (0.31, "0.31"), (-2.5, "-2.5"), (1e-5, "0.00001"), (1e-7, "1e-7"), (1.5e-7, "1.5e-7"),
     (1e15, "1000000000000000.0"), (1e16, "1e16"), (1.2345678901234568e17, "1.2345678901234568e17"),
     (123456789012345.6, "123456789012345.6"), (5e-324, "5e-324"), (0.0, "0.0"), (-0.0, "-0.0")],
)
def test_doubles_are_laid_out_as_serde_json_prints_them(value, text):
    assert f64_text(value) == text


def test_singles_print_their_own_shortest_digits():
    assert (f32_text(0.1), f32_text(1 / 3), f32_text(85.5)) == ("0.1", "0.33333334", "85.5")


# --- verdicts on the API's forms ------------------------------------------------------------------------


def heart_rate_payload(start: datetime, **values) -> dict:
    return {"data": {"metrics": [metric("HeartRate", recorded_at=iso(start), heart_rate=68, **values)],
                     "workouts": [workout(workout_type="running", started_at=iso(start + timedelta(hours=1)),
                                          ended_at=iso(start + timedelta(hours=2)), total_energy_kcal=402.5)]}}


def test_each_ingestion_gets_the_verdict_its_stored_form_allows(api_engine):
    user = add_user(api_engine)
    older = BUILDS[[b.name for b in BUILDS].index("4fd5433")]
    # The newest build that writes Activity as 4fd5433 did (the later ones added mobility fields).
    older_name = [b.name for b in BUILDS if b.metrics.get("Activity") == older.metrics["Activity"]][-1]
    older_activity = metric("Activity", build=older, recorded_at=iso(T0 + timedelta(days=1)), step_count=10)
    zero = metric("Activity", recorded_at=iso(T0 + timedelta(days=2)), step_count=5, distance_meters=-0.0)
    ids = {
        "head": store_internal(api_engine, user, heart_rate_payload(T0)),
        "older_build": store_internal(api_engine, user, {"data": {"metrics": [older_activity], "workouts": []}},
                                      build=older),
        "edited": store_internal(api_engine, user, heart_rate_payload(T0 + timedelta(days=3))),
        "negative_zero": store_internal(api_engine, user, {"data": {"metrics": [zero], "workouts": []}}),
        "unknown_build": store_internal(api_engine, user, heart_rate_payload(T0 + timedelta(days=4))),
        "wrapped": store_wrapped(api_engine, user, json.dumps(hae_body(T0 + timedelta(days=5), 3)).encode(),
                                 status="error"),
        "wrapped_edited": store_wrapped(api_engine, user, json.dumps(hae_body(T0 + timedelta(days=6), 3)).encode(),
                                        status="error"),
        "lossy": store_wrapped(api_engine, user, json.dumps(hae_body(T0 + timedelta(days=7), 3)).encode()
                               .replace(b"Example Phone", b"Example \xff Phone"), status="error"),
        "corrupted": store_corrupted(api_engine, user, json.dumps(hae_body(T0 + timedelta(days=8), 3)).encode(),
                                     "Invalid JSON format"),
        "exporter_body": store_exporter_body(api_engine, user, hae_body(T0 + timedelta(days=9), 3)),
        "placeholder": store_placeholder(api_engine, user, status="error"),
    }
    edit(api_engine, ids["edited"], "jsonb_set(raw_payload, '{data,metrics,0,heart_rate}', '69')")
    edit(api_engine, ids["unknown_build"], "jsonb_set(raw_payload, '{data,metrics,0,heart_rhythm}', '\"sinus\"')")
    edit(api_engine, ids["wrapped_edited"],
         "jsonb_set(raw_payload, '{raw_payload}', to_jsonb(replace(raw_payload->>'raw_payload', '101', '111')))")
    with api_engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO raw_ingestions (user_id, payload_hash, payload_size_bytes, raw_payload, "
                             "processing_status) SELECT user_id, '', payload_size_bytes, raw_payload, 'error' "
                             "FROM raw_ingestions WHERE id = :id"), {"id": ids["head"]})

    report = run(api_engine)

    outcomes = by_id(report)
    verdicts = {name: (outcomes[i]["checksum"], outcomes[i]["checksum_rendering"]) for name, i in ids.items()}
    assert verdicts == {
        "head": ("verified", "api_serde:d9ebdd0"),
        "older_build": ("verified", f"api_serde:{older_name}"),
        "edited": ("mismatch", "api_serde:d9ebdd0"),
        "negative_zero": ("unverifiable", None),  # jsonb has no -0.0: the API may have hashed it
        "unknown_build": ("unverifiable", None),
        "wrapped": ("verified", "body_text"),
        "wrapped_edited": ("mismatch", "body_text"),
        "lossy": ("unverifiable", "body_text"),  # invalid UTF-8 became U+FFFD: the original bytes are gone
        "corrupted": ("verified", "body_text"),
        "exporter_body": ("unverifiable", None),
        "placeholder": ("unverifiable", None),
    }
    assert report["checksums"] == {"verified": 4, "mismatch": 2, "unverifiable": 5, "missing": 1, "skipped": 0}
    assert statuses(api_engine)[ids["edited"]] == statuses(api_engine)[ids["wrapped_edited"]] == "recovery_failed"
    # The unknown build's extra key has no column: recovered as far as it goes, and named.
    assert report["failure_categories"] == {"checksum_mismatch": 2, "body_not_stored": 1, "unsupported_points": 1}
    assert by_id(report)[ids["unknown_build"]]["accounting"]["unsupported"] == {"HeartRate.heart_rhythm": 1}
    assert report["recovered"] == 12 - 4
    # The tool's own SHA-256 of every stored value is in the report, as the server computes it.
    with api_engine.connect() as conn:
        server = dict(conn.execute(sa.text(f"SELECT id::text, {PAYLOAD_SHA256_SQL} FROM raw_ingestions")).all())
    assert {i["ingestion_id"]: i["stored_sha256"] for i in report["ingestions"]} == server


def test_eleven_ingestions_hashed_as_the_api_does_all_recover_with_the_default_settings(api_engine):
    """The issue's incident: with hashes of the received bytes or of the API's own serialisation, the
    old comparison with jsonb's text failed 11 of 11 as checksum_mismatch."""
    user = add_user(api_engine)
    for day in range(6):
        store_internal(api_engine, user, heart_rate_payload(T0 + timedelta(days=day)))
    for day in range(6, 9):
        store_wrapped(api_engine, user, json.dumps(hae_body(T0 + timedelta(days=day), 4)).encode(), status="error")
    for day in range(9, 11):
        store_corrupted(api_engine, user, json.dumps(hae_body(T0 + timedelta(days=day), 4)).encode(), "Invalid JSON")

    report = run(api_engine)

    assert (report["recovered"], report["recovery_failed"]) == (11, 0)
    assert report["checksums"]["verified"] == 11
    assert report["checksum_renderings"] == {"api_serde:d9ebdd0": 6, "body_text": 5}
    assert report["rows_inserted_total"] == 6 * 2 + 5 * 4 and report["missing_after_total"] == 0


def test_checksums_skipped_with_verify_off_still_recover_a_mismatch(api_engine):
    user = add_user(api_engine)
    ingestion = store_wrapped(api_engine, user, json.dumps(hae_body(T0, 3)).encode(), status="error")
    edit(api_engine, ingestion, "jsonb_set(raw_payload, '{raw_payload}', to_jsonb(replace("
                                "raw_payload->>'raw_payload', '101', '111')))")
    assert run(api_engine)["failure_categories"] == {"checksum_mismatch": 1}

    again = run(api_engine, statuses=["recovery_failed"], verify=False)

    assert again["checksums"]["skipped"] == 1 and again["recovered"] == 1


# --- recover what was previewed -------------------------------------------------------------------------


def test_recover_from_a_preview_refuses_a_payload_edited_since_and_takes_nothing_new(api_engine, tmp_path):
    user = add_user(api_engine)
    kept = store_internal(api_engine, user, heart_rate_payload(T0))
    changed = store_wrapped(api_engine, user, json.dumps(hae_body(T0 + timedelta(days=1), 3)).encode(),
                            status="error")
    assert main(["recover", "--dry-run", "--no-progress", "--report-dir", str(tmp_path / "preview")]) == 0
    [preview] = (tmp_path / "preview").glob("data_recovery_report_*.json")
    later = store_internal(api_engine, user, heart_rate_payload(T0 + timedelta(days=2)))  # after the preview
    # Edited after the preview, and its hash with it: the checksum alone would not see it.
    edit(api_engine, changed, "jsonb_set(raw_payload, '{raw_payload}', to_jsonb(replace("
                              "raw_payload->>'raw_payload', '101', '111')))")
    with api_engine.begin() as conn:
        conn.execute(sa.text("UPDATE raw_ingestions SET payload_hash = encode(sha256(convert_to("
                             "raw_payload->>'raw_payload', 'UTF8')), 'hex') WHERE id = :id"), {"id": changed})

    assert main(["recover", "--from-preview", str(preview), "--no-progress", "--report-dir", str(tmp_path)]) == 0

    [report_file] = tmp_path.glob("data_recovery_report_*.json")
    report = json.loads(report_file.read_text())
    # The edited one is left as found (like the one the preview did not see): the next recovery takes it.
    assert statuses(api_engine) == {kept: "recovered", changed: "error", later: "error"}
    assert (by_id(report)[changed]["outcome"], by_id(report)[changed]["failure_category"]) == (
        "skipped", "changed_since_preview")
    assert by_id(report)[changed]["checksum"] == "verified"
    assert report["preview"]["previewed"] == 2 and report["preview"]["candidates_not_previewed"] == 1
    assert report["parameters"]["preview_report"] == str(preview)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "preview_report: cannot read"),
        ("not json {", "is not JSON"),
        (json.dumps({"dry_run": False, "ingestions": []}), "is not the report of a preview"),
        (json.dumps({"dry_run": True, "ingestions": [{"ingestion_id": "550e8400-e29b-41d4-a716-446655440000",
                                                      "outcome": "would_recover"}]}),
         "without its id and stored_sha256"),
        (json.dumps({"dry_run": True, "ingestions": [{"ingestion_id": "42", "stored_sha256": "0" * 64}]}),
         "an ingestion_id must be a UUID"),
    ],
)
def test_a_missing_or_garbled_preview_report_stops_before_any_connection(content, message, tmp_path, monkeypatch,
                                                                         capsys):
    monkeypatch.setenv("DATABASE_URL", UNREACHABLE)
    path = tmp_path / "preview.json"
    if content is not None:
        path.write_text(content)
    assert main(["recover", "--from-preview", str(path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert message in err and "secret-pw" not in err


def test_the_notebooks_preview_then_recover_what_was_previewed(api_engine, tmp_path):
    from recovery_lib.runbook import execute as runner

    definitions = api_schema.definitions(api_engine)
    user = add_user(api_engine)
    kept = store_internal(api_engine, user, heart_rate_payload(T0))
    changed = store_corrupted(api_engine, user, json.dumps(hae_body(T0 + timedelta(days=1), 3)).encode(),
                              "Invalid JSON format")
    placeholder = store_placeholder(api_engine, user, status="error")
    runs = tmp_path / "runs"

    preview = runner.run_notebook("preview", {}, runs_dir=runs, progress_bar=False)
    assert preview.ok, preview.error
    assert preview.report["checksums"]["verified"] == 2
    edit(api_engine, changed, "jsonb_set(raw_payload, '{parse_error}', '\"edited\"')")
    recover = runner.run_notebook("recover", {"preview_report": str(preview.report_path)}, runs_dir=runs,
                                  progress_bar=False)

    assert recover.ok, recover.error
    assert statuses(api_engine) == {kept: "recovered", changed: "error", placeholder: "recovery_failed"}
    outcomes = by_id(recover.report)
    assert (outcomes[changed]["outcome"], outcomes[changed]["failure_category"]) == ("skipped",
                                                                                    "changed_since_preview")
    assert outcomes[placeholder]["failure_category"] == "body_not_stored"
    assert api_schema.definitions(api_engine) == definitions
