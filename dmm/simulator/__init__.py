"""Market simulator: realistic, seedable dm.v1 traffic of China's data exchanges, with labelled anomalies.

    from dmm.simulator import MarketSimulator, SimulationConfig, write_jsonl, write_truth

    sim = MarketSimulator(SimulationConfig(seed=7, start=start, injections={"price_outlier": 2}))
    write_jsonl(sim, Path("events.jsonl"))       # or: for key, value in sim.messages(): ...
    write_truth(sim.incidents, Path("truth.jsonl"))

Clean traffic breaks none of the contract's eight alert rules at their default thresholds;
each injection adds exactly one incident of its kind, listed in the ground truth.

Sources (figures as quoted in press coverage of the statements)
---------------------------------------------------------------
- National Data Administration (国家数据局), statements on the 2024 national data market
  (Digital China Development Report 2024, released 2025): data trading scale above
  160 billion CNY in 2024, up more than 30% a year; on-exchange trading (incl. trades
  registered with an exchange) about 30 billion CNY, doubled year on year; the number of
  high-quality datasets up 27.4%.
- NDA press briefings, 2025: more than 35,000 high-quality datasets built by mid-2025, close
  to 4 billion CNY of them traded cumulatively; new listings on the main exchanges up 70%
  in H1 2025, with AI-oriented high-quality datasets growing fastest.
- The "Data elements x" three-year action plan (2024-2026): the twelve sectors of
  sectors.csv, and public data supplied free or conditionally free (有条件无偿).

How they map to rates (`figures.py`):
- Traded value is split across exchanges by weight: the national hubs (Shanghai, Shenzhen,
  Beijing, Guiyang) carry about half, Guangzhou and the Zhejiang/Chongqing centres most of
  the rest. Catalogue size per exchange follows the same weights; sectors are weighted
  toward finance, manufacturing, transport and commerce.
- Scale: a day of event time trades the statements' value for its date, 160 billion CNY a
  year in 2024 grown 30% a year since (~945 M CNY a day at the end of 2026), whatever the
  event rate: prices scale so that `rate` events a second carry it (`CNY_PER_ARRIVAL`).
  Each exchange's minute stays under 60% of its volume-spike threshold (the rule's minimum,
  or its ratio x the median of the previous minutes), which keeps clean traffic free of
  volume spikes; a deal the minute has no room for is closed in the next one.
- High-quality datasets are about a third of datasets (70% on the exchanges of
  `HIGH_QUALITY_VALUE_SHARE`), priced at a premium. On those exchanges buyers favour them
  just enough that they carry the configured share of traded value (`--hq-share`); elsewhere
  every listing is as likely to sell, which leaves them about 35-40% of value nationally.
- Growth: every rate rises `ANNUAL_GROWTH` (+30%) per market year of simulated time
  (`--growth`; `--year-seconds` compresses the calendar to show years in a short run).
- Newcomers: new products (3,328 per half year) and new participants (2,600 per quarter)
  arrive at those national counts per day of event time (~18 and ~29 a day), at a steady
  pace. A new seller lists its first product on joining, a new buyer makes its first
  purchase; `MarketSimulator.newcomers` lists them.
- On exchange: 30 of the 160 billion in 2024, on-exchange value doubling each market year
  (capped at 90% of value); the rest is off-exchange registered. Purposes follow the buyer
  (enterprises commercial, institutes research, government organs public governance).
"""

from dmm.simulator import figures
from dmm.simulator.anomalies import KINDS
from dmm.simulator.engine import MarketSimulator, SimulationConfig
from dmm.simulator.ground_truth import Incident, read_truth, write_truth
from dmm.simulator.growth import SECONDS_PER_YEAR
from dmm.simulator.live import Publish, publish_live
from dmm.simulator.progress import track_event_time
from dmm.simulator.scenario import SCENARIO_ALL, parse_injections, parse_shares
from dmm.simulator.wire import Message
from dmm.simulator.writer import write_jsonl

__all__ = [
    "KINDS",
    "SCENARIO_ALL",
    "SECONDS_PER_YEAR",
    "Incident",
    "MarketSimulator",
    "Message",
    "Publish",
    "SimulationConfig",
    "figures",
    "parse_injections",
    "parse_shares",
    "publish_live",
    "read_truth",
    "track_event_time",
    "write_jsonl",
    "write_truth",
]
