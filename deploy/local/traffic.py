#!/usr/bin/env python3
"""A little of every kind of traffic, so that every labelled metric has
samples: a sale campaign, claims (new, repeated, sold out), checkouts paid
through the gateways, a coupon campaign.

    traffic.py BASE_URL ADMIN_TOKEN SERVICE_TOKEN [--claims N] [--paid-wait S]

Exits 1 (with the reason) when an answer is not what the API promises,
or when no order is paid within --paid-wait seconds. Standard library only.
"""

import argparse
import datetime
import json
import sys
import time
import urllib.error
import urllib.request
import uuid


def call(base, token, method, path, body=None, idempotency_key=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method)
    request.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if idempotency_key:
        request.add_header("Idempotency-Key", idempotency_key)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as error:
        text = error.read()
        try:
            return error.code, json.loads(text)
        except ValueError:
            return error.code, text.decode(errors="replace")


def expect(what, status, body, *wanted):
    if status not in wanted:
        sys.exit(f"FAIL: {what}: {status} (wanted {wanted}): {body}")
    return body


def campaign(base, admin, kind, supply, run):
    now = datetime.datetime.now(datetime.timezone.utc)
    draft = {
        "name": f"ops {kind} {run}",
        "kind": kind,
        "supply": supply,
        "starts_at": (now - datetime.timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "ends_at": (now + datetime.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "voucher_valid_for": "P30D",
        "codes": {"pattern": "OPS-####-????"},
    }
    if kind == "sale":
        draft["price"] = {"amount": 10000, "currency": "THB"}
        draft["tiers"] = [{"until_rank": min(5, supply), "discount_percent": 90}]
    status, body = call(base, admin, "POST", "/v1/campaigns", draft)
    created = expect(f"create {kind} campaign", status, body, 201)
    status, body = call(base, admin, "POST", f"/v1/campaigns/{created['id']}/publish")
    expect(f"publish {kind} campaign", status, body, 200, 202)
    return created["id"]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("base")
    parser.add_argument("admin")
    parser.add_argument("service")
    parser.add_argument("--claims", type=int, default=12)
    parser.add_argument("--paid-wait", type=float, default=30.0)
    args = parser.parse_args()
    base, admin, service = args.base.rstrip("/"), args.admin, args.service
    run = uuid.uuid4().hex[:8]

    supply = max(2, args.claims - 2)
    sale = campaign(base, admin, "sale", supply, run)
    reservations = []
    for number in range(args.claims):
        user = f"ops-{run}-{number}"
        status, body = call(base, service, "POST", f"/v1/campaigns/{sale}/claims",
                            {"user_id": user}, idempotency_key=f"{run}-{number}")
        body = expect(f"claim {number}", status, body, 201, 410, 503)
        if status == 201:
            reservations.append(body["reservation_id"])
    if not reservations:
        sys.exit("FAIL: no claim reserved a voucher")
    # The same user again: their voucher back (200), or sold out once
    # memory knows the campaign has none left (answered before the store).
    status, body = call(base, service, "POST", f"/v1/campaigns/{sale}/claims",
                        {"user_id": f"ops-{run}-0"})
    expect("repeated claim", status, body, 200, 410)

    orders = []
    for number, reservation in enumerate(reservations[:4]):
        status, body = call(
            base, service, "POST", f"/v1/reservations/{reservation}/checkout",
            {"email": f"ops-{run}-{number}@example.com",
             "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2035,
                      "cvc": "123", "name": "Ops Check"}},
            idempotency_key=f"{run}-pay-{number}")
        orders.append(expect(f"checkout {number}", status, body, 202)["order_id"])
    if len(reservations) > 4:
        status, body = call(base, service, "DELETE", f"/v1/reservations/{reservations[4]}")
        expect("release", status, body, 200, 204)

    deadline = time.monotonic() + args.paid_wait
    paid = set()
    while time.monotonic() < deadline and len(paid) < len(orders):
        for order in orders:
            status, body = call(base, service, "GET", f"/v1/orders/{order}")
            body = expect("order", status, body, 200)
            if body["status"] in ("paid", "failed"):
                paid.add(order)
        time.sleep(0.5)
    if not paid:
        sys.exit(f"FAIL: no order settled within {args.paid_wait} s")

    coupon = campaign(base, admin, "coupon", 3, run)
    for number in range(5):
        status, body = call(base, service, "POST", f"/v1/campaigns/{coupon}/claims",
                            {"user_id": f"ops-{run}-c{number}"})
        expect(f"coupon claim {number}", status, body, 201, 410)
    status, body = call(base, admin, "GET", f"/v1/campaigns/{sale}/report")
    expect("report", status, body, 200)
    print(f"traffic: {len(reservations)} reserved, {len(orders)} checked out, "
          f"{len(paid)} settled, coupon claims made")


if __name__ == "__main__":
    main()
