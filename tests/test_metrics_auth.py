"""/metrics: its own token when configured, and totals from trigger-kept counters."""
from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from gateway.app import create_app
from records.settings import Settings
from records.wire import ChannelCreate
from test_api import RecordingControl, assert_error, client_for, make_clip

API_KEY = "metrics-api-key-1"
TOKEN = "scrape-token-9d2f"


def totals(text: str) -> dict[str, float]:
    return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples if not s.labels}


async def test_metrics_token_is_required_when_configured(tmp_path, store, redis):
    settings = Settings(data_dir=str(tmp_path), api_key=API_KEY, metrics_token=TOKEN, rate_limit=100_000)
    async with client_for(create_app(settings, store, redis, RecordingControl())) as c:
        assert_error(await c.get("/metrics"), 401, "unauthorized")
        assert_error(await c.get("/metrics", headers={"Authorization": "Bearer wrong"}), 401, "unauthorized")
        # the API key is not the metrics token: a scraper's secret opens nothing else, and v.v.
        assert_error(await c.get("/metrics", headers={"Authorization": f"Bearer {API_KEY}"}), 401, "unauthorized")
        ok = await c.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200 and "livecut_clips_total" in ok.text
        assert_error(await c.get("/api/channels", headers={"Authorization": f"Bearer {TOKEN}"}), 401, "unauthorized")


async def test_totals_come_from_counters_kept_by_the_database(tmp_path, store, redis):
    settings = Settings(data_dir=str(tmp_path), api_key=API_KEY, rate_limit=100_000)
    channel = await store.create_channel(ChannelCreate(name="a", source="rtmp"), {})
    for i in range(3):
        await make_clip(store, channel["id"], tmp_path, start=i * 20.0)
    counters = {r["name"]: r["value"] for r in await store.pool.fetch("SELECT name, value FROM stat_counters")}
    assert counters == {"clips": 3, "events": 3, "outbox_pending": 3}
    async with client_for(create_app(settings, store, redis, RecordingControl())) as c:
        seen = totals((await c.get("/metrics")).text)
        assert (seen["livecut_clips_total"], seen["livecut_events_total"], seen["livecut_outbox_pending"]) == (3, 3, 3)
        pending = await store.pending_notifications()
        await store.mark_delivered([pending[0]["id"]])
        await store.mark_delivered([r["id"] for r in pending])  # again for the first: counted once
        await store.pool.execute("DELETE FROM outbox")
        seen = totals((await c.get("/metrics")).text)
        assert (seen["livecut_clips_total"], seen["livecut_outbox_pending"]) == (3, 0)
