"""Which engine a wave (and the readiness check) runs: an Exchange 2013 source means the exchange engine even
with a Graph target; otherwise a Graph target means the graph engine; otherwise the source's kind."""

from migrations_app.models import Endpoint
from migrations_app.services.execution.specs import engine_kind


def _endpoint(kind: str, role: str) -> Endpoint:
    return Endpoint(name=f"{kind}-{role}", kind=kind, role=role)


def test_an_exchange_source_runs_the_exchange_engine_into_a_graph_target():
    assert engine_kind(_endpoint("exchange", "source"), _endpoint("graph", "target")) == "exchange"


def test_an_imap_source_into_a_graph_target_runs_the_graph_engine():
    assert engine_kind(_endpoint("imap", "source"), _endpoint("graph", "target")) == "graph"


def test_without_a_graph_target_the_source_decides_and_nothing_means_simulated():
    assert engine_kind(_endpoint("imap", "source"), _endpoint("imap", "target")) == "imap"
    assert engine_kind(None, None) == "simulated"
