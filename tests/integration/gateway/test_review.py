"""Datasets, review decisions, captions, exports and the review page (headless chromium)."""

from __future__ import annotations

import os
import shutil

import httpx
import pytest

from .seed import CLIPS, DATASET_ID, seed_dataset
from .test_gateway_api import _problem

CHROMIUM = "/usr/bin/chromium"


async def test_dataset_review_api_and_page_tokens(gateway, store) -> None:
    async with await gateway.client("acme") as c, await gateway.client("globex") as g:
        await c.post("/v1/projects", json={"name": "jane"})
        await g.post("/v1/projects", json={"name": "jane"})
        seed_dataset(store, "acme", "jane")
        base = f"/v1/projects/jane/datasets/{DATASET_ID}"

        assert [
            d["id"] for d in (await c.get("/v1/projects/jane/datasets")).json()["datasets"]
        ] == [DATASET_ID]
        detail = (await c.get(base)).json()
        assert detail["counts"]["kept"] == 2 and detail["report"]["url"].startswith("http")
        assert [ch["key"].rsplit("/", 1)[1] for ch in detail["charts"]] == ["angles.png"]
        async with httpx.AsyncClient() as s3:  # the links work, without any API key
            assert (await s3.get(detail["report"]["url"])).text == "<html>report</html>"
        _problem(await g.get(base), 404)  # other tenant

        clips = {x["clip_id"]: x for x in (await c.get(f"{base}/clips")).json()}
        first, _, dark = (cid for cid, *_ in CLIPS)
        assert clips[dark]["decision"] == "reject" and clips[dark]["reasons"]
        assert clips[first]["caption"]["text"] == "j4ne smiling, close-up"

        r = await c.put(
            f"{base}/clips/{first}/decision", json={"decision": "reject", "note": "blurry"}
        )
        assert r.status_code == 200, r.text
        assert r.json()["decision"] == "reject" and r.json()["curation_decision"] == "keep"
        _problem(await c.put(f"{base}/clips/nope/decision", json={"decision": "keep"}), 404)
        r = await c.put(f"{base}/captions/{first}", json={"text": "j4ne  laughing outdoors"})
        assert r.json()["text"] == "j4ne laughing outdoors" and r.json()["edited"] is True
        assert r.json()["versions"] == 2 and r.json()["trigger"] == "j4ne"
        assert (
            "trigger"
            in _problem(await c.put(f"{base}/captions/{first}", json={"text": "a woman"}), 400)[
                "detail"
            ]
        )
        _problem(
            await c.put(f"{base}/captions/{dark}", json={"text": "j4ne in the dark"}), 404
        )  # not captioned
        assert (await c.post(f"{base}/captions/{first}/approve")).json()["approved"] is True
        # the captioning service reads the same record: edited by a person, approved, locked
        from loraforge.captioning.review import CaptionReviewStore
        from loraforge.runtime.keys import ProjectRef

        rec = CaptionReviewStore(store, ProjectRef("acme", "jane"), DATASET_ID).require(first)
        assert rec.text == "j4ne laughing outdoors" and rec.approved and rec.locked

        export = (await c.post(f"{base}/exports")).json()
        assert export["clips"] == 1  # the dark one stays rejected, the first one was rejected
        async with httpx.AsyncClient() as s3:
            doc = (await s3.get(export["download"]["url"])).json()
        assert [x["clip_id"] for x in doc["clips"]] == [CLIPS[1][0]]

        link = (await c.post(f"{base}/review-link")).json()
        token = link["token"]
        assert link["url"] == f"/review/jane/{DATASET_ID}#token={token}"
        async with httpx.AsyncClient(base_url=gateway.url) as page:
            ok = await page.get(f"{base}/review", headers={"X-Review-Token": token})
            assert ok.status_code == 200 and len(ok.json()["clips"]) == 3
            # the token opens this dataset only, and nothing else of the API
            _problem(
                await page.get(
                    "/v1/projects/jane/datasets/ds-other/review", headers={"X-Review-Token": token}
                ),
                404,
            )
            _problem(await page.get("/v1/projects", headers={"X-Review-Token": token}), 401)
            _problem(
                await page.get(f"{base}/review", headers={"X-Review-Token": token[:-2] + "xx"}), 401
            )
            html = await page.get(f"/review/jane/{DATASET_ID}")
            assert html.status_code == 200 and "X-Review-Token" in html.text


def _chromium_missing() -> str | None:
    if not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
        return f"chromium is not installed at {CHROMIUM} (apt-get install -y chromium)"
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return "the playwright Python package is not installed (pip install playwright)"
    return None


@pytest.mark.skipif(_chromium_missing() is not None, reason=str(_chromium_missing()))
async def test_review_page_in_a_browser(gateway, store) -> None:
    from playwright.async_api import async_playwright

    async with await gateway.client("acme") as c:
        await c.post("/v1/projects", json={"name": "jane"})
        seed_dataset(store, "acme", "jane")
        base = f"/v1/projects/jane/datasets/{DATASET_ID}"
        link = (await c.post(f"{base}/review-link", json={"scope": "write"})).json()
        keep_id, edit_id = CLIPS[0][0], CLIPS[1][0]

        async with async_playwright() as pw:
            browser = await pw.chromium.launch(
                executable_path=CHROMIUM,
                args=[
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--no-first-run",
                ],
            )
            try:
                page = await browser.new_page()
                errors: list[str] = []
                page.on("pageerror", lambda e: errors.append(str(e)))
                await page.goto(gateway.url + link["url"])
                await page.wait_for_selector("body[data-loaded='1']", timeout=15000)
                assert await page.locator(".card").count() == 3
                # the trigger is highlighted in the caption preview
                mark = page.locator(f".card[data-clip='{edit_id}'] .preview mark.trigger")
                assert await mark.inner_text() == "j4ne"
                assert await page.locator("#charts img").count() == 1

                card = page.locator(f".card[data-clip='{keep_id}']")
                await card.locator("button.reject").click()
                await page.wait_for_selector(f".card.reject[data-clip='{keep_id}']", timeout=10000)

                edit = page.locator(f".card[data-clip='{edit_id}']")
                await edit.locator("textarea.caption").fill("j4ne waving at the camera, j4ne happy")
                assert await edit.locator(".preview mark.trigger").count() == 2
                await edit.locator("button.save-caption").click()
                await page.wait_for_selector(f".card[data-clip='{edit_id}'] .saved", timeout=10000)
                assert errors == []
            finally:
                await browser.close()

        clips = {x["clip_id"]: x for x in (await c.get(f"{base}/clips")).json()}
        assert clips[keep_id]["decision"] == "reject" and clips[keep_id]["override"] == "reject"
        caps = {x["clip_id"]: x for x in (await c.get(f"{base}/captions")).json()["captions"]}
        assert caps[edit_id]["text"] == "j4ne waving at the camera, j4ne happy"
        assert caps[edit_id]["edited"] is True
