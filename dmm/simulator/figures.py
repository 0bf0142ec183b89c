"""Published market figures turned into the simulator's weights (see the package docstring's Sources)."""

from __future__ import annotations

from typing import Final

from dmm.simulator.identity import Kind

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

ON_EXCHANGE_SHARE: Final = 0.8
# Buyers are mostly enterprises; government organs buy for public governance, institutes for research.
BUYER_KIND_WEIGHTS: Final[dict[Kind, float]] = {"enterprise": 0.8, "institute": 0.12, "agency": 0.08}
PURPOSE_WEIGHTS: Final[dict[str, dict[str, float]]] = {
    "enterprise": {"commercial": 0.9, "research": 0.1},
    "institute": {"research": 0.8, "public_governance": 0.2},
    "agency": {"public_governance": 0.85, "research": 0.15},
}

# Business events by kind, per arrival (heartbeats come on top, one per exchange per 10 s).
ACTIVITY_WEIGHTS: Final[dict[str, float]] = {"trade": 0.55, "usage": 0.33, "listing": 0.12}

# Growth and entry (NDA statements above): trading up more than 30% a year; 3,328 new data
# products listed in half a year on the main exchanges; 2,600 new participants a quarter.
ANNUAL_GROWTH: Final = 0.30
NEW_PRODUCTS_PER_HALF_YEAR: Final = 3_328
NEW_PARTICIPANTS_PER_QUARTER: Final = 2_600
# Scale between the real and the simulated market, by traded value: on-exchange trading was
# about 30 billion CNY in 2024, and one business arrival of this simulator trades about
# 3,000 CNY on average (measured: ~190,000 CNY per simulated minute at 1 arrival per second).
ON_EXCHANGE_CNY_PER_YEAR: Final = 30e9
CNY_PER_ARRIVAL: Final = 3_000.0

# Exchanges where registered high-quality datasets carry most of the traded value, and the
# share they carry. Illustrative targets: the NDA figures give the national trend, not
# per-exchange shares. Datasets listed there are high-quality more often.
HIGH_QUALITY_VALUE_SHARE: Final[dict[str, float]] = {"SHDEX": 0.6, "BJIDEX": 0.55, "GYBDX": 0.5}
HIGH_QUALITY_SHARE_WHERE_TARGETED: Final = 0.7
