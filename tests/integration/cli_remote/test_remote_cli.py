"""`loraforge --api URL --key KEY ...` against a real gateway and the real ingest service."""

from __future__ import annotations

import json

PROJECT = "remote-p"


async def test_ingest_through_the_gateway_then_list_jobs(remote_gateway, lf, two_shot_video):
    gw = remote_gateway
    key = await gw.key("acme")
    api = ["--api", gw.url, "--key", key]

    # upload + start + follow: the project is created on the way
    res = await lf(
        *api,
        "ingest",
        str(two_shot_video),
        "--project",
        PROJECT,
        "--min-s",
        "2",
        "--max-s",
        "3",
        "--json",
    )
    assert res.exit_code == 0, res.output
    view = json.loads(res.stdout)
    assert view["state"] == "SUCCEEDED", view
    assert view["clips"] == 2 and view["project"] == PROJECT
    assert [s["source"] for s in view["sources"]] == [str(two_shot_video)]  # the user's name
    assert view["sources"][0]["key"].startswith(f"acme/{PROJECT}/sources/")

    # the job is listed by GET /v1/jobs (env variables instead of the options)
    res = await lf("jobs", "--project", PROJECT, "--json", LF_API=gw.url, LF_API_KEY=key)
    assert res.exit_code == 0, res.output
    listed = json.loads(res.stdout)["jobs"]
    assert [(j["job_id"], j["kind"], j["state"]) for j in listed] == [
        (view["job_id"], "ingest", "SUCCEEDED")
    ]

    # later stages submit through the gateway too (their backends here have no workers: the
    # jobs stay PENDING, so --no-wait)
    res = await lf(*api, "curate", "-p", PROJECT, "--target", "5", "--no-wait", "--json")
    assert res.exit_code == 0, res.output
    curation = json.loads(res.stdout)
    assert curation["state"] == "PENDING"
    res = await lf(
        *api,
        "train",
        "-p",
        PROJECT,
        "--dataset",
        "ds-0123",
        "--base",
        "tiny-sdxl",
        "--steps",
        "5",
        "--no-wait",
        "--json",
    )
    assert res.exit_code == 0, res.output
    run = json.loads(res.stdout)
    assert run["state"] == "PENDING" and run["dataset_id"] == "ds-0123"
    res = await lf(*api, "jobs", "-p", PROJECT, "--kind", "curation", "--kind", "trainer", "--json")
    assert {j["job_id"] for j in json.loads(res.stdout)["jobs"]} == {
        curation["job_id"],
        run["job_id"],
    }

    # the same file again: stored once, the human output says so
    res = await lf(*api, "ingest", str(two_shot_video), "--project", PROJECT, "--no-wait")
    assert res.exit_code == 0, res.output
    assert "0 new file(s), 1 already stored" in res.stdout and "job " in res.stdout


async def test_errors_are_explained(remote_gateway, lf, two_shot_video, tmp_path):
    gw = remote_gateway
    key = await gw.key("acme")

    res = await lf("--api", gw.url, "--key", "lf_not-a-real-key", "jobs", "--json")
    assert res.exit_code == 1
    error = json.loads(res.stdout)["error"]
    assert "401" in error and "API key" in error

    res = await lf(
        "--api", gw.url, "--key", "lf_wrong", "ingest", str(two_shot_video), "-p", PROJECT
    )
    assert res.exit_code == 1 and "401" in res.output

    # commands with no gateway equivalent say they are local-only (before touching anything)
    res = await lf("--api", gw.url, "--key", key, "stack", "up")
    assert res.exit_code == 2 and "local-only" in res.output
    res = await lf(
        "--api",
        gw.url,
        "--key",
        key,
        "export",
        "-f",
        "seed",
        "-o",
        str(tmp_path / "x"),
        "-p",
        PROJECT,
        "--json",
    )
    assert res.exit_code == 2 and "local-only" in json.loads(res.stdout)["error"]

    # a job the gateway does not know: 404, explained
    res = await lf(
        "--api",
        gw.url,
        "--key",
        key,
        "lora",
        "pull",
        "j-missing",
        "--out",
        str(tmp_path),
        "-p",
        PROJECT,
        "--json",
    )
    assert res.exit_code == 2 and "404" in json.loads(res.stdout)["error"]

    # nothing listens there
    from loraforge.stack.binaries import free_port

    res = await lf("--api", f"http://127.0.0.1:{free_port()}", "--key", key, "jobs", "--json")
    assert res.exit_code == 1 and "cannot reach the gateway" in json.loads(res.stdout)["error"]
