"""Published market figures turned into the simulator's weights (see the package docstring's Sources)."""

from __future__ import annotations

from datetime import datetime
from typing import Final

from dmm.simulator.identity import Kind
from models.clock import CHINA_STANDARD_TIME

# Share of traded value per exchange. The four national hubs lead (Shanghai, Shenzhen,
# Beijing, Guiyang), then Guangzhou and the Zhejiang/Chongqing centres, then regional platforms.
EXCHANGE_WEIGHTS: Final[dict[str, float]] = {
    "SHDEX": 16.0,
    "SZDEX": 14.0,
    "BJIDEX": 11.0,
    "GYBDX": 8.0,
    "GZDEX": 8.0,
    "ZJBDX": 5.0,
    "HZIDX": 4.0,
    "WDEC": 4.0,
    "CSJDP": 3.0,
    "SZBDX": 3.0,
    "HNBDX": 3.0,
    "FJBDX": 3.0,
    "NBDEC": 2.0,
    "ZZDEC": 2.0,
    "SDDEX": 2.0,
    "CCBDX": 2.0,
    "HFDEP": 2.0,
    "HNDPS": 1.5,
    "QDMDX": 1.0,
    "DLDEP": 1.0,
    "HRBDEC": 1.0,
    "DYDEC": 1.0,
    "SXDEX": 1.0,
    "GXBDX": 1.0,
}

# "Data elements x" sectors: finance, manufacturing, transport and commerce trade most.
SECTOR_WEIGHTS: Final[dict[str, float]] = {
    "financial_services": 18.0,
    "industrial_manufacturing": 14.0,
    "transportation": 11.0,
    "commerce_trade": 10.0,
    "healthcare": 8.0,
    "sci_tech_innovation": 8.0,
    "urban_governance": 7.0,
    "green_low_carbon": 6.0,
    "modern_agriculture": 5.0,
    "meteorology": 5.0,
    "culture_tourism": 4.0,
    "emergency_management": 4.0,
}

SOURCE_WEIGHTS: Final[dict[str, float]] = {"enterprise": 0.70, "public": 0.22, "personal": 0.08}
# Public data is supplied free or conditionally free (paid use for commercial purposes).
PUBLIC_PRICING_WEIGHTS: Final[dict[str, float]] = {"conditional_free": 0.65, "free": 0.35}
CATEGORY_WEIGHTS: Final[dict[str, float]] = {
    "dataset": 0.42,
    "api": 0.28,
    "report": 0.10,
    "model": 0.08,
    "service": 0.07,
    "compute": 0.05,
}
# Registered high-quality datasets: a large, growing share of traded value (count +27.4% in 2024).
HIGH_QUALITY_SHARE: Final = 0.35

# Buyers are mostly enterprises; government organs buy for public governance, institutes for research.
BUYER_KIND_WEIGHTS: Final[dict[Kind, float]] = {"enterprise": 0.8, "institute": 0.12, "agency": 0.08}
PURPOSE_WEIGHTS: Final[dict[str, dict[str, float]]] = {
    "enterprise": {"commercial": 0.9, "research": 0.1},
    "institute": {"research": 0.8, "public_governance": 0.2},
    "agency": {"public_governance": 0.85, "research": 0.15},
}

# Business events by kind, per arrival (heartbeats come on top, one per exchange per 10 s).
ACTIVITY_WEIGHTS: Final[dict[str, float]] = {"trade": 0.55, "usage": 0.33, "listing": 0.12}

# The statements (see the package docstring's Sources), as the simulator uses them.
# "Data trading scale above 160 billion CNY in 2024, up more than 30% a year": the market trades
# TRADED_CNY_2024 / 365 a day on 1 January 2024, times (1 + ANNUAL_GROWTH) per year since.
STATEMENTS_EPOCH: Final = datetime(2024, 1, 1, tzinfo=CHINA_STANDARD_TIME)
TRADED_CNY_2024: Final = 160e9
ANNUAL_GROWTH: Final = 0.30
# "On-exchange trading about 30 billion CNY, doubled year on year": the on-exchange venue's share of
# traded value starts at 30/160 and on-exchange value doubles each year (so the share rises by
# 2 / 1.3 a year) until it reaches ON_EXCHANGE_SHARE_CAP, where doubling must stop.
ON_EXCHANGE_CNY_2024: Final = 30e9
ON_EXCHANGE_ANNUAL_GROWTH: Final = 1.0
ON_EXCHANGE_SHARE_CAP: Final = 0.9
# "3,328 new data products listed in H1 2025; 2,600 new participants in Q2 2025": per day of event time.
NEW_PRODUCTS_PER_HALF_YEAR: Final = 3_328
NEW_PARTICIPANTS_PER_QUARTER: Final = 2_600
DAYS_PER_HALF_YEAR: Final = 365 / 2
DAYS_PER_QUARTER: Final = 365 / 4
# Calibration, not a statement: what one business arrival (listing, trade or usage) trades on average
# at the prices of `prices` (measured: about 3,600 CNY). Prices are scaled by the traded value wanted
# per arrival over this, so a day of event time trades the statements' value at any event rate.
CNY_PER_ARRIVAL: Final = 3_600.0

# Exchanges where registered high-quality datasets carry most of the traded value, and the share
# they carry. Beijing's follows the statements (high-quality datasets grew from about 10% to about
# 80% of the Beijing International Big Data Exchange's trading); the others are illustrative (the NDA figures give the
# national trend, not per-exchange shares). Datasets listed there are high-quality more often.
HIGH_QUALITY_VALUE_SHARE: Final[dict[str, float]] = {"SHDEX": 0.6, "BJIDEX": 0.8, "GYBDX": 0.5}
HIGH_QUALITY_SHARE_WHERE_TARGETED: Final = 0.7
