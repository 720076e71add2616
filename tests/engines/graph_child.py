"""One graph engine pass in a fresh interpreter, against a fake Microsoft cloud another process serves, so its
peak resident set (VmHWM) is the engine's alone:

    python -m tests.engines.graph_child JOB.json      (writes JOB.out: items copied, seconds, peak_rss_mb)

JOB.json: {"base": the fake's http://127.0.0.1:port, "spec": the MailboxSpec as dataclasses.asdict gives it}.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace

from bench.imap_copy import _peak_rss_mb
from migrations_app.engines import EndpointSpec, MailboxSpec, get_engine
from tests.fakes.microsoft import RewritingSession
from tests.fakes.outbound import allow_fake_in_environment


def main(job_path: str) -> int:
    job = json.loads(Path(job_path).read_text())
    raw = job["spec"]
    spec = MailboxSpec(
        **{
            **raw,
            "source": EndpointSpec(**raw["source"]),
            "target": EndpointSpec(**raw["target"]),
        }
    )
    allow_fake_in_environment(job["base"])  # the engine reaches the fake through the outbound rules
    session = RewritingSession(SimpleNamespace(base=job["base"], _fail_after=None, _creates=0))
    engine = get_engine("graph", http_client=session, max_wait=60)
    started = time.perf_counter()
    result = engine.sync(spec)
    Path(job_path).with_suffix(".out").write_text(
        json.dumps(
            {
                "items_copied": result.items_copied,
                "seconds": round(time.perf_counter() - started, 2),
                "peak_rss_mb": round(_peak_rss_mb(), 1),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
