"""The limits of the public contract, in one place: the services enforce them in their rules and
the gateway validates requests against the same numbers (it imports no service's rules)."""

from __future__ import annotations

# Purchases (tracking).
MAX_AMOUNT_KOPECKS = 10**12  # ten billion roubles: far above any purchase, far below int64
MAX_ID_LENGTH = 128  # order, part and click ids

# Spending (redemption).
MIN_PAYMENT_KOPECKS = 100  # 1 rouble
MAX_PAYMENT_KOPECKS = 10**11  # far above any phone bill, far below the ledger's limit
MIN_NOMINAL_KOPECKS = 100 * 100  # a certificate: 100 roubles…
MAX_NOMINAL_KOPECKS = 80_000 * 100  # …to 80,000 roubles
MIN_TO_PAY_KOPECKS = 100  # the buyer always pays at least 1 rouble of a device
MAX_IDEMPOTENCY_KEY_LENGTH = 160
CERTIFICATE_CODE_RANDOM_SYMBOLS = 19  # 19 × log2(31) ≈ 94 bits from `secrets`
CERTIFICATE_CODE_LENGTH = CERTIFICATE_CODE_RANDOM_SYMBOLS + 1  # and a check symbol
