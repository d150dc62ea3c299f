from __future__ import annotations

from shared.notify import Notifier
from shared.records import MemoryRecordStore
from shared.runs import Run, RunState, RunStore
from shared.settings import Settings


class FlakyTopic:
    def __init__(self) -> None:
        self.down = False
        self.received: list[tuple[str, str]] = []
        self.events: list[dict] = []

    def send(self, events) -> None:
        if self.down:
            raise ConnectionError("topic unreachable")
        self.received.extend((e["type"], e["subject"]) for e in events)
        self.events.extend(events)


TOPIC_SETTINGS = Settings.from_env({"TUNEFLOW_STORAGE_CONNECTION": "x",
                                   "TUNEFLOW_EVENTGRID_TOPIC_ENDPOINT": "https://topic.example/api/events"})


def setup():
    records = MemoryRecordStore()
    topic = FlakyTopic()
    notifier = Notifier(TOPIC_SETTINGS, records, lambda: topic)
    runs = RunStore(records, on_transition=notifier.on_transition)
    runs.create(Run(run_id="r1", state=RunState.RECEIVED, dataset="d", sources=[], base_model="m"))
    return runs, notifier, topic, records


def test_each_transition_is_one_cloud_event_in_order():
    runs, _, topic, records = setup()
    runs.advance("r1", RunState.VALIDATING)
    runs.advance("r1", RunState.SUBMITTED)
    runs.advance("r1", RunState.SUBMITTED)  # no transition, no event
    assert topic.received == [("tuneflow.run.received", "runs/r1"), ("tuneflow.run.validating", "runs/r1"),
                              ("tuneflow.run.submitted", "runs/r1")]
    assert not list(records.entries("outbox/"))


def test_a_failing_topic_never_breaks_the_flow_and_catches_up_in_order():
    runs, notifier, topic, records = setup()
    topic.down = True
    runs.advance("r1", RunState.VALIDATING)
    run = runs.advance("r1", RunState.SUBMITTED)
    assert run.state == RunState.SUBMITTED and len(list(records.entries("outbox/"))) == 2
    topic.down = False
    assert notifier.flush() == 2
    assert [t for t, _ in topic.received] == ["tuneflow.run.received", "tuneflow.run.validating",
                                              "tuneflow.run.submitted"]


def test_disabled_without_a_topic():
    records = MemoryRecordStore()
    topic = FlakyTopic()
    notifier = Notifier(Settings.from_env({"TUNEFLOW_STORAGE_CONNECTION": "x"}), records, lambda: topic)
    runs = RunStore(records, on_transition=notifier.on_transition)
    runs.create(Run(run_id="r1", state=RunState.RECEIVED, dataset="d", sources=[], base_model="m"))
    assert not notifier.enabled and not list(records.entries("outbox/")) and not topic.received


def test_a_run_created_with_several_transitions_announces_each():
    from shared.runs import Transition

    records = MemoryRecordStore()
    topic = FlakyTopic()
    notifier = Notifier(TOPIC_SETTINGS, records, lambda: topic)
    runs = RunStore(records, on_transition=notifier.on_transition)
    run = Run(run_id="r2", state=RunState.REJECTED, dataset="d", sources=[], base_model="m",
              history=[Transition(RunState.RECEIVED, "t0"), Transition(RunState.VALIDATING, "t1"),
                       Transition(RunState.REJECTED, "t2")])
    runs.create(run)
    assert [t for t, _ in topic.received] == ["tuneflow.run.received", "tuneflow.run.validating",
                                              "tuneflow.run.rejected"]


def test_the_topic_gets_a_cloudevents_batch_with_stable_ids_and_its_key():
    import httpx
    import orjson

    from shared.notify import TopicPublisher

    seen: list[httpx.Request] = []

    def topic(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200 if len(seen) > 1 else 503)

    client = httpx.Client(transport=httpx.MockTransport(topic))
    publisher = TopicPublisher("https://topic.example/api/events", "topic-key", lambda: None, lambda: client)
    records = MemoryRecordStore()
    notifier = Notifier(TOPIC_SETTINGS, records, lambda: publisher)
    runs = RunStore(records, on_transition=notifier.on_transition)
    runs.create(Run(run_id="r3", state=RunState.RECEIVED, dataset="d", sources=[], base_model="m"))  # 503: kept
    assert notifier.flush() == 1
    first, again = (orjson.loads(r.content) for r in seen)
    assert first == again  # the retry is the same event, so a consumer can de-duplicate it
    (event,) = again
    assert event["specversion"] == "1.0" and event["id"] == "r3-0000" and event["type"] == "tuneflow.run.received"
    assert event["source"] == "/tuneflow/runs" and event["data"]["run_id"] == "r3"
    assert seen[1].headers["aeg-sas-key"] == "topic-key"
    assert seen[1].headers["content-type"].startswith("application/cloudevents-batch+json")
