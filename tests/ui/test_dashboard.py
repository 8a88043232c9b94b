"""The dashboard in a real browser against a live server with real rollouts: list, filter, live
updates, one rollout (attempts, waterfall, model calls, reward), training curves, workers, auth."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from boltrl.testing import LiveServer
from tests.ui.conftest import ARTIFACTS, TOKEN
from tests.ui.seed import Seeded

WAIT_S = 10


def wait_for(driver: Any, css: str, text: str | None = None) -> Any:
    """The first element matching `css` (containing `text`), once the page shows it."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def found(d: Any) -> Any:
        for el in d.find_elements(By.CSS_SELECTOR, css):
            if text is None or text in el.text:
                return el
        return False

    return WebDriverWait(driver, WAIT_S, poll_frequency=0.05).until(found, f"no {css!r} showing {text!r}")


def texts(driver: Any, css: str) -> list[str]:
    from selenium.webdriver.common.by import By

    return [el.text for el in driver.find_elements(By.CSS_SELECTOR, css)]


def shot(driver: Any, name: str, height: int | None = None) -> None:
    if height:
        driver.set_window_size(1400, height)
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))
    driver.set_window_size(1400, 1000)


def test_rollouts_list_filters_and_updates_live(browser: Any, seeded: tuple[LiveServer, Seeded]) -> None:
    server, s = seeded
    browser.get(f"{server.url}/#/rollouts")
    row = wait_for(browser, f'#rollouts-table tr[data-id="{s.solved}"]')
    assert "succeeded" in row.text and "task-17x23" in row.text and "2/2" in row.text
    assert texts(browser, "#rollouts-table tbody tr")[0].startswith(s.queued[-1])  # newest first
    assert "succeeded 1" in wait_for(browser, "#counts", "succeeded").text
    shot(browser, "rollouts")

    from selenium.webdriver.support.ui import Select

    Select(browser.find_element("id", "filter-status")).select_by_value("failed")
    wait_for(browser, f'#rollouts-table tr[data-id="{s.failed}"]')
    wait_for(browser, "#rollouts-table tbody")
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, WAIT_S).until(lambda d: len(texts(d, "#rollouts-table tbody tr")) == 1)
    assert "#/rollouts?status=failed" in browser.current_url

    # A rollout enqueued now shows up without a reload (the page polls).
    browser.get(f"{server.url}/#/rollouts?status=queued")
    wait_for(browser, f'#rollouts-table tr[data-id="{s.queued[0]}"]')
    httpx.post(f"{server.url}/v1/rollouts", json={"rollouts": [{"id": "calc-live", "input": "x"}]}, timeout=5)
    assert "queued" in wait_for(browser, '#rollouts-table tr[data-id="calc-live"]').text


def test_one_rollout_shows_attempts_calls_and_reward(browser: Any, seeded: tuple[LiveServer, Seeded]) -> None:
    server, s = seeded
    browser.get(f"{server.url}/#/rollouts")
    wait_for(browser, f'#rollouts-table tr[data-id="{s.solved}"] a').click()
    assert wait_for(browser, "#rollout-status").text == "succeeded"
    assert browser.current_url.endswith(f"#/rollout/{s.solved}")
    assert wait_for(browser, "#reward").text == "1"
    attempts = texts(browser, "#attempts-table tbody tr")
    assert len(attempts) == 2
    assert "runner-a" in attempts[0] and "failed" in attempts[0] and "agent crashed" in attempts[0]
    assert "runner-b" in attempts[1] and "succeeded" in attempts[1]
    assert len(texts(browser, "#waterfall .wf-row")) == 3  # two model calls and the reward

    calls = texts(browser, "#model-calls .model-call")
    assert len(calls) == 2
    first, second = calls
    assert "What is 17 * 23?" in first and "calculator" in first and "tool_calls" in first
    assert "completion tokens 9" in first and "prompt tokens 14" in first and "weights 3" in first
    assert "The answer is 391." in second and "391" in second and "TOOL" in second.upper()
    shot(browser, "rollout", height=1900)

    wait_for(browser, '#waterfall .wf-row[data-seq="2"]').click()  # the reward span's attributes
    assert "exact_match" in wait_for(browser, "#span-detail").text


def test_running_rollout_and_failed_rollout(browser: Any, seeded: tuple[LiveServer, Seeded]) -> None:
    server, s = seeded
    browser.get(f"{server.url}/#/rollout/{s.failed}")
    assert wait_for(browser, "#rollout-status").text == "failed"
    assert wait_for(browser, "#reward").text == "0"
    assert "wrong answer" in wait_for(browser, "#attempts-table tbody tr").text
    browser.get(f"{server.url}/#/rollout/{s.running}")
    assert wait_for(browser, "#rollout-status").text == "running"
    assert "No spans yet." in wait_for(browser, "main", "No spans").text
    browser.get(f"{server.url}/#/rollout/no-such-rollout")
    assert "404" in wait_for(browser, "#error", "404").text


def test_training_curves_and_workers(browser: Any, seeded: tuple[LiveServer, Seeded]) -> None:
    server, s = seeded
    browser.get(f"{server.url}/#/training")
    chart = wait_for(browser, '#charts .chart[data-metric="rollout/reward_mean"]')
    assert "latest 0.66" in chart.text
    assert [
        el.get_attribute("data-metric") for el in browser.find_elements("css selector", "#charts .chart")
    ] == [
        "rollout/reward_mean",
        "val/reward_mean",
        "train/loss",
    ]
    assert len(chart.find_elements("css selector", "circle")) == 8
    assert s.run_id in wait_for(browser, "#run-select").text
    shot(browser, "training")

    browser.get(f"{server.url}/#/workers")
    b = wait_for(browser, '#workers-table tr[data-worker="runner-b"]')
    assert "running" in b.text
    a = wait_for(browser, '#workers-table tr[data-worker="runner-a"]')
    assert a.text.split()[1:5] == ["idle", "0", "0", "2"]  # state, running, succeeded, failed
    assert "1" in wait_for(browser, '[data-summary="running attempts"]').text
    shot(browser, "workers")


@pytest.mark.parametrize("first_try", ["wrong-token", TOKEN])
def test_auth_asks_for_the_token_once(
    browser: Any, seeded_auth: tuple[LiveServer, Seeded], first_try: str
) -> None:
    server, s = seeded_auth
    assert httpx.get(f"{server.url}/v1/rollouts", timeout=5).status_code == 401
    browser.get(f"{server.url}/")
    browser.execute_script("sessionStorage.clear()")
    browser.get(f"{server.url}/#/rollouts")
    field = wait_for(browser, "#token-input")
    assert field.is_displayed()
    field.send_keys(first_try)
    browser.find_element("id", "login-button").click()
    if first_try != TOKEN:
        assert "refused" in wait_for(browser, "#login-error", "refused").text
        field.send_keys(TOKEN)
        browser.find_element("id", "login-button").click()
    wait_for(browser, f'#rollouts-table tr[data-id="{s.solved}"] a').click()
    assert wait_for(browser, "#rollout-status").text == "succeeded"
    assert "The answer is 391." in wait_for(browser, "#model-calls").text
    browser.refresh()  # the token is kept for the tab: no second prompt
    assert wait_for(browser, "#rollout-status").text == "succeeded"
    assert not browser.find_element("id", "login").is_displayed()
    browser.find_element("id", "logout").click()
    assert wait_for(browser, "#token-input").is_displayed()
