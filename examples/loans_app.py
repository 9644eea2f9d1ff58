"""A producing app: asks driftloop for predictions, then sends each label when it is known.

Start the loop first (`make up`), then `.venv/bin/python examples/loans_app.py`. It scores a
few loan applications, waits as a real app would for their outcomes, and sends those: half
over HTTP, half over Kafka. Until the loop has a first model serve answers 503: the app then
answers with its own fallback rule and logs that prediction with ingest, so that its label
becomes training data: that is how the first model's data arrives.
"""

from __future__ import annotations

import random
import time

from driftloop.client import Client, Refused, new_request_id


def application(rng: random.Random) -> dict[str, object]:
    return {
        "amount": round(rng.uniform(1_000, 40_000), 2),
        "term_months": rng.choice([12, 24, 36, 60]),
        "grade": rng.choice("ABC"),
        "verified": rng.random() < 0.6,
        "income": None if rng.random() < 0.1 else round(rng.uniform(20_000, 150_000), 2),
    }


def outcome(record: dict[str, object]) -> int:
    """The true outcome, known later (here: a rule the model has to learn)."""
    return int(float(record["amount"]) > 20_000 and record["grade"] != "A")  # type: ignore[arg-type]


def main() -> None:
    rng = random.Random(7)
    with Client(bootstrap_servers="127.0.0.1:9092", source="loans-app") as client:
        asked = []
        for _ in range(20):
            record = application(rng)
            request_id = new_request_id()
            try:
                answer = client.infer(record, request_id=request_id)
                shown = f"{answer.predictions[0].prediction} (v{answer.model_version})"
            except Refused as refused:  # no model yet: the app's own rule, logged with ingest
                client.send_prediction(request_id, record, 0)
                shown = f"fallback 0 ({refused.reason})"
            print(f"{request_id}: {shown}")
            asked.append((request_id, record))
        time.sleep(1.0)  # the outcomes come later
        for number, (request_id, record) in enumerate(asked):
            client.send_label(request_id, outcome(record), via="http" if number % 2 else "kafka")
    print(f"sent {len(asked)} labels")


if __name__ == "__main__":
    main()
