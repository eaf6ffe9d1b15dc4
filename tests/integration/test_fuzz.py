"""The end-to-end fuzzer (issue 30), small: seeded mutations of valid uploads and interactions,
classified by the real decoder, sent through the real pipeline (Kafka, a worker, Triton, Milvus), and
the end state checked against the contract message by message: every refused one dead-lettered
with the decoder's reason, every accepted upload stored exactly as decoded (or dead-lettered with
its media, encoder or sink reason), every accepted interaction applied as the pure maths says (or
dead-lettered with a reason), nothing stored or dead-lettered that no message explains.
`python -m bench.hostile --fuzz N` runs the large version."""

from __future__ import annotations

import pytest

from bench.hostile import FuzzPlan, FuzzRun
from deploy.local.stack import Stack

pytestmark = pytest.mark.integration


def test_fuzzed_messages_end_as_the_contract_says(stack: Stack) -> None:
    plan = FuzzPlan(uploads=50, interactions=50, seed=30, drain_timeout_s=240.0)
    result = FuzzRun(stack, plan, stack.state_dir / "fuzz", max_image_bytes=64 * 1024).run()
    print(result.table())  # the counts, shown with -s or when the test fails
    assert not result.violations, "\n".join(result.violations)
    assert sum(result.accepted.values()) >= 30  # a few dozen accepted mutations crossed the whole pipeline
    assert result.accepted["uploads"] and result.accepted["interactions"] and result.refused
    assert result.stored > 0 and result.applied > 0
