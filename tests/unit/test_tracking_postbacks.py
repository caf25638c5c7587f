"""Postback formats and authentication, without I/O."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from services.tracking import domain
from services.tracking.domain import Channel, CustomerType, ReportedStatus
from services.tracking.postbacks import NetworkConfig, RawPostback, parse, roubles_to_kopecks, sign

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)
NETWORKS = {"direct": NetworkConfig("direct", ("new-secret", "old-secret")),
            "admitad": NetworkConfig("admitad", ("adm-secret",))}


def direct(body: dict, *, secret: str = "new-secret", at: datetime = NOW, header: str | None = None) -> RawPostback:
    raw = json.dumps(body).encode()
    signature = header if header is not None else sign(secret, int(at.timestamp()), raw)
    return RawPostback("direct", "POST", "", raw, {"x-cashback-signature": signature}, "10.0.0.1")


BODY = {"order_id": "A-1", "status": "pending", "amount_kopecks": 123450, "currency": "RUB", "channel": "app",
        "customer_type": "legal_entity", "destination_domain": "tmall.ru", "other_loyalty_used": True,
        "click_id": "c1", "part_id": "2", "event_time": "2026-01-01T11:00:00Z"}


def test_signed_direct_postback_is_parsed():
    report = parse(direct(BODY), NETWORKS, NOW)
    assert (report.order_id, report.part_id, report.click_id, report.status) == ("A-1", "2", "c1",
                                                                                ReportedStatus.PENDING)
    assert report.facts.amount_kopecks == 123450 and report.facts.channel is Channel.APP
    assert report.facts.customer_type is CustomerType.LEGAL_ENTITY and report.facts.other_loyalty_used


def test_both_secrets_are_accepted_during_rotation():
    assert parse(direct(BODY, secret="old-secret"), NETWORKS, NOW).order_id == "A-1"


@pytest.mark.parametrize("header", ["", "t=1767268800", "v1=00", "t=x,v1=00", "t=1767268800,v1=deadbeef"])
def test_unsigned_or_forged_direct_postback_is_refused(header):
    with pytest.raises(domain.SignatureInvalid):
        parse(direct(BODY, header=header), NETWORKS, NOW)


def test_wrong_secret_or_changed_body_is_refused():
    with pytest.raises(domain.SignatureInvalid):
        parse(direct(BODY, secret="guess"), NETWORKS, NOW)
    signed = direct(BODY)
    tampered = RawPostback("direct", "POST", "", signed.body.replace(b"123450", b"923450"), signed.headers, "")
    with pytest.raises(domain.SignatureInvalid):
        parse(tampered, NETWORKS, NOW)


@pytest.mark.parametrize("skew", [timedelta(seconds=301), timedelta(seconds=-301)])
def test_stale_or_future_signature_is_refused(skew):
    with pytest.raises(domain.TimestampOutOfWindow):
        parse(direct(BODY, at=NOW + skew), NETWORKS, NOW)
    assert parse(direct(BODY, at=NOW + skew / 301 * 300), NETWORKS, NOW).order_id == "A-1"


@pytest.mark.parametrize("change", [{"amount_kopecks": "100"}, {"amount_kopecks": -1}, {"status": "paid"},
                                    {"order_id": ""}, {"currency": "USD"}, {"channel": "tv"}])
def test_malformed_direct_postback_is_refused(change):
    with pytest.raises(domain.PostbackMalformed):
        parse(direct({**BODY, **change}), NETWORKS, NOW)


def test_admitad_get_with_secret():
    raw = RawPostback("admitad", "GET", "order_id=9&status=approved&order_sum=1234.50&currency=RUB&subid=c9"
                      "&position_id=p1&time=1767268800&secret=adm-secret", b"", {}, "")
    report = parse(raw, NETWORKS, NOW)
    assert (report.order_id, report.part_id, report.click_id) == ("9", "p1", "c9")
    assert report.status is ReportedStatus.APPROVED and report.facts.amount_kopecks == 123450
    assert report.event_time == datetime(2026, 1, 1, 12, tzinfo=UTC)


def test_admitad_post_form_and_declined_status():
    raw = RawPostback("admitad", "POST", "", b"order_id=9&status=declined&order_sum=10&secret=adm-secret",
                      {"content-type": "application/x-www-form-urlencoded"}, "")
    report = parse(raw, NETWORKS, NOW)
    assert report.status is ReportedStatus.DECLINED and report.facts.amount_kopecks == 1000


def test_admitad_commission_is_kept_as_commission_never_as_the_amount():
    raw = RawPostback("admitad", "GET", "order_id=9&status=approved&order_sum=2500.00&payment_sum=125.50"
                      "&secret=adm-secret", b"", {}, "")
    report = parse(raw, NETWORKS, NOW)
    assert (report.facts.amount_kopecks, report.commission_kopecks) == (250_000, 12_550)
    with pytest.raises(domain.PostbackMalformed) as refused:  # a commission alone is no amount
        parse(RawPostback("admitad", "GET", "order_id=9&status=approved&payment_sum=125&secret=adm-secret", b"",
                          {}, ""), NETWORKS, NOW)
    assert refused.value.metadata.get("field") == "order_sum"


def test_admitad_wrong_or_missing_secret_is_refused():
    for qs in ("order_id=9&status=pending&order_sum=1", "order_id=9&status=pending&order_sum=1&secret=x"):
        with pytest.raises(domain.SignatureInvalid):
            parse(RawPostback("admitad", "GET", qs, b"", {}, ""), NETWORKS, NOW)


def test_roubles_convert_to_kopecks_exactly():
    assert roubles_to_kopecks("1234.50") == 123450
    assert roubles_to_kopecks("0.29") == 29  # float(0.29) * 100 would be 28.999…
    assert roubles_to_kopecks("1") == 100 and roubles_to_kopecks("1.5") == 150
    for bad in ("1.234", "-1", "1e3", "", "1,50", "abc", " 1.00.0"):
        with pytest.raises(domain.PostbackMalformed):
            roubles_to_kopecks(bad)


def test_unknown_network_is_refused():
    with pytest.raises(domain.NetworkUnknown):
        parse(RawPostback("cityads", "GET", "", b"", {}, ""), NETWORKS, NOW)


def test_fingerprint_is_equal_for_exact_duplicates_only():
    a = parse(direct(BODY), NETWORKS, NOW)
    b = parse(direct(BODY, at=NOW + timedelta(seconds=5)), NETWORKS, NOW)
    c = parse(direct({**BODY, "amount_kopecks": 1}), NETWORKS, NOW)
    assert a.fingerprint == b.fingerprint != c.fingerprint
