"""The synthetic world: the same seed gives the same content, and titles are distinct (the demo
lists them side by side)."""

from __future__ import annotations

from deploy.traffic import LoadPlan, Traffic


def test_titles_are_distinct_and_the_seed_repeats_the_content() -> None:
    a, b = Traffic(LoadPlan(seed=5), run_id="r"), Traffic(LoadPlan(seed=5), run_id="r")
    uploads = [a.upload(1000 + n) for n in range(300)]
    assert len({u.title for u in uploads}) == 300
    assert [u.title for u in uploads] == [b.upload(1000 + n).title for n in range(300)]
    assert all(u.tags[0] in u.author_nickname for u in uploads)  # a topic's items carry its tag and creator
