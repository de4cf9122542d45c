"""A last hostile review of the SensorThings API, published pilots and `pilots publish`.

Each test here shows one problem the earlier reviews (test_sta_hostile.py,
test_published_hostile.py) and their fixes missed; it fails until the problem is fixed. The
STA tests run the app in-process over the embedded store with its queries counted, as
test_sta_hostile.py does.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from api.app import create_app
from api.auth import TokenStore
from core.settings import Settings
from core.store.embedded import EmbeddedStore
from pilots.cli import app as cli
from tests.security import test_sta_hostile as sta
from tests.security.test_published_hostile import _stored

STA = sta.STA
#: Readings per Datastream of Santa Fe: 20,000 at the registered 10 minutes (139 days).
PER_SERIES = 20_000


def _santa_fe_everywhere(tmp: Path, public: dict[str, object]) -> Iterator[sta.World]:
    """Santa Fe published as given, with `PER_SERIES` readings in each of its 23 Datastreams."""
    registry = sta._registry(tmp, public)
    inner = EmbeddedStore(tmp / "store.sqlite", registry)
    inner.start()
    for device in registry.pilots["santa-fe"].devices:
        step = device.interval_s * 10**9
        ts = sta.T0 - PER_SERIES * step + np.arange(PER_SERIES, dtype=np.int64) * step
        for sensor in device.sensors:
            inner.write(sta._readings(registry, device.id, sensor, ts, np.arange(PER_SERIES) % 7))
    store = sta.CountingStore(inner)
    tokens = TokenStore.in_data_dir(tmp)
    read = {"Authorization": f"Bearer {tokens.create('ana', 'read')}"}
    settings = Settings(
        data_dir=tmp,
        api_public_rate="100000/minute",
        api_public_rate_total="100000/minute",
        _env_file=None,
    )
    with TestClient(create_app(settings, registry, store, cache=False)) as client:
        yield client, store, read
    tokens.close()
    inner.close()


# -- (1) cost: a stranger's plainest request refused after the work ------------------------------


def test_a_strangers_plain_datastreams_page_is_fitted_before_the_work_not_refused_after(
    tmp_path: Path,
) -> None:
    """`GET /sta/v1.1/Datastreams`, no options, anonymous, cold edge cache, over a pilot
    published for a period (public_from/public_until) whose 23 Datastreams hold 139 days each.

    `budget.cost` estimates a Datastream's phenomenonTime at one read (`QUERIES_PER_READ`, 2
    store queries), so `Budget.fit` keeps the default page of 100. `ObservationReader.edges`
    really spends a count, a gallop and a halving for the last reading, and again for the
    first (about 9 to 14 queries a Datastream): the request makes all 200 of its queries
    and then answers 400 "needs more than 200 store queries". The same with `public = true`
    alone and three years of readings (162 queries at 139 days, 200 and a 400 at 3 years)."""
    public = {
        "public": True,
        "public_from": dt.date(2020, 1, 1),
        "public_until": dt.date(2099, 1, 1),
    }
    worlds = _santa_fe_everywhere(tmp_path, public)
    client, store, _ = next(worlds)
    try:
        store.calls = 0
        response = client.get(f"{STA}/Datastreams")
        assert response.status_code == 200, (store.calls, response.text[:300])
        assert store.calls <= 200
    finally:
        for _ in worlds:
            pass


# -- (1) paging: a nextLink that goes nowhere ------------------------------------------------------


def test_a_filtered_count_does_not_give_a_nextlink_to_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`$filter` on result with `$count=true`, following the nextLink, when the readings the
    count has to see are exactly the scan bound (PILOTS_API_MAX_SCAN_READINGS; here 4000, the
    series' size; with the default 250,000, any `phenomenonTime` range holding 250,000).

    From the second page on (`$skiptoken` set, or `$orderby=phenomenonTime desc` from the
    first), `Renderer.observations` counts with `paging.count`, which reads every reading of
    the range (`count_and_page`, top 0), then reads the page with `end_when_spent`: nothing is
    left to read, so the page is empty and its nextLink is the very URL just asked. A client
    that follows nextLinks (as 18-088 §9.3.3.6 tells it to) loops forever, each request
    reading the whole range. Near the bound (room for k readings) each page moves k readings."""
    monkeypatch.setattr(sta, "MAX_SCAN", sta.N)
    worlds = sta._world(tmp_path, {"public": True})
    client, _, read = next(worlds)
    try:
        level = f"{STA}/Datastreams('sf-rlv-01:level')/Observations"
        # the whole series, by closed time bounds (no edge search), and a result condition
        start, end = _iso(int(sta.LEVEL_TS[0])), _iso(int(sta.LEVEL_TS[-1]) + 1)
        within = f"phenomenonTime ge {start} and phenomenonTime lt {end} and result ge -2"
        for order in ({}, {"$orderby": "phenomenonTime desc"}):
            params = {"$filter": within, "$count": "true", "$top": "100", **order}
            response = client.get(level, params=params, headers=read)
            url, got = str(response.url), 0
            for _ in range(60):
                assert response.status_code == 200, response.text[:300]
                body = response.json()
                got += len(body["value"])
                nxt = body.get("@iot.nextLink")
                assert nxt != url or body["value"], (
                    f"empty page whose nextLink is itself after {got} observations "
                    f"(order {order or 'asc'}): {url}"
                )
                if nxt is None:
                    break
                url = nxt
                response = client.get(url, headers=read)
            assert got == sta.N, (order, got)
    finally:
        for _ in worlds:
            pass


def _iso(ts_ns: int) -> str:
    seconds, ns = divmod(ts_ns, 10**9)
    moment = dt.datetime.fromtimestamp(seconds, dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{ns:09d}Z"


# -- (1) bytes: one anonymous request, 34 MB -----------------------------------------------------


def test_a_strangers_page_is_bounded_in_bytes(tmp_path: Path) -> None:
    """`Observations?$top=10000&$expand=Datastream($expand=Thing,Sensor,ObservedProperty),
    FeatureOfInterest` without a token: 3 store queries, 0.25 s, and a 34.5 MB answer (about
    3.4 KB an observation against 150 B without `$expand`; 155 MB more peak RSS in-process).
    The memoised to-one expansions cost nothing in the budget (`cost` counts no reads or
    observations for them) but each is copied into every one of the 10,000 documents. The
    bound checked here is the API's own largest kept answer (`api_answers_max_bytes`, 32 MiB);
    rate-limited at 60/minute a client, 600/minute in all, that is 20 GB a minute of answers
    from ~150-byte requests."""
    worlds = _santa_fe_everywhere(tmp_path, {"public": True})
    client, _, _ = next(worlds)
    try:
        response = client.get(
            f"{STA}/Observations",
            params={
                "$top": "10000",
                "$expand": "Datastream($expand=Thing,Sensor,ObservedProperty),FeatureOfInterest",
            },
        )
        assert response.status_code in (200, 400), response.text[:200]
        assert len(response.content) <= 32 << 20, f"{len(response.content)} bytes"
    finally:
        for _ in worlds:
            pass


# -- (2) pilots publish --force ------------------------------------------------------------------


def test_publish_force_does_not_delete_what_it_did_not_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--force` onto a folder holding an earlier publish plus the user's own files (the
    checkout of a GitHub Pages site: `.git`, `CNAME`, notes): `check_out` looks only for
    `datapackage.json` and `SHA256SUMS` at the top, and `_put_in_place` moves the whole folder
    aside and deletes it, `.git` (with unpushed history) included, without a word. `--force`
    "replaces only an earlier publish": files it did not write must be kept, or the run
    refused (exit 2)."""
    _stored(tmp_path, monkeypatch)
    site = tmp_path / "site"
    args = ["publish", "resistencia", "--start", "2026-11-20", "--end", "2026-11-21"]
    first = CliRunner().invoke(cli, [*args, "--out", str(site)])
    assert first.exit_code == 0, first.output
    (site / ".git").mkdir()
    (site / ".git" / "HEAD").write_text("ref: refs/heads/main\n", encoding="utf-8")
    (site / "CNAME").write_text("data.example.org\n", encoding="utf-8")
    again = CliRunner().invoke(cli, [*args, "--out", str(site), "--force"])
    left = sorted(p.name for p in site.iterdir())
    assert again.exit_code == 2 or {".git", "CNAME"} <= set(left), (
        f"exit {again.exit_code}; {site} now holds {left}"
    )


def test_publish_out_with_a_tilde_is_the_home_folder_or_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--out ~/site` reaching the command unexpanded (quoted, or `--out=~/site`): the guard
    checks `<cwd>/~/site`, a folder literally named `~` is made in the working directory, and
    pyarrow (which expands `~`) writes the Parquet file under `$HOME/.site.XXXX.partial/`:
    exit 1 "cannot write ~/site: Failed to open local file '/root/.site....partial/data/
    readings.parquet'", and a `~` folder left behind (which `rm -rf ~` then removes the home
    of). The path must be expanded (or refused, exit 2) before the guard."""
    _stored(tmp_path, monkeypatch)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    work = Path(tempfile.mkdtemp(dir=tmp_path))
    monkeypatch.chdir(work)
    args = ["publish", "resistencia", "--start", "2026-11-20", "--end", "2026-11-21"]
    result = CliRunner().invoke(cli, [*args, "--out", "~/site"])
    assert not (work / "~").exists(), (result.exit_code, result.output[-300:])
    assert result.exit_code == 2 or (home / "site" / "datapackage.json").is_file(), result.output
