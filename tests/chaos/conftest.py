"""The fault campaign (campaign.py) and its checker (checker.py).

test_checker.py needs nothing but Python; test_campaign_quick.py starts
real processes (SILT_BIN, etcd, moto) for about four minutes."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "e2e"), str(HERE.parents[1] / "localstack")]
