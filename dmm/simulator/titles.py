"""Chinese product titles, so listings read like the catalogues of real exchanges."""

from __future__ import annotations

import random
from typing import Final

_TOPICS: Final[dict[str, tuple[str, ...]]] = {
    "industrial_manufacturing": ("工业设备运行状态", "供应链库存", "工厂能耗监测", "零部件质量检测"),
    "modern_agriculture": ("农作物长势遥感", "农产品批发价格", "土壤墒情", "畜牧养殖"),
    "commerce_trade": ("商圈客流", "零售消费趋势", "跨境电商物流", "商户经营画像"),
    "transportation": ("港口集装箱吞吐量", "城市道路拥堵指数", "航班运行", "货车轨迹"),
    "financial_services": ("企业信用评分", "小微企业经营", "反欺诈风险名单", "供应链金融票据"),
    "sci_tech_innovation": ("专利技术图谱", "科研成果转化", "高新技术企业", "大模型训练语料"),
    "culture_tourism": ("景区客流", "文旅消费", "酒店入住率", "演出票务"),
    "healthcare": ("医保结算", "区域疾病谱", "医疗器械流通", "药品流通追溯"),
    "emergency_management": ("自然灾害风险", "安全生产隐患", "应急物资储备", "森林火险"),
    "meteorology": ("逐小时格点气象", "台风路径", "农业气象灾害", "风光功率预报"),
    "urban_governance": ("城市部件", "人口热力分布", "地下管网", "城市体检指标"),
    "green_low_carbon": ("企业碳排放核算", "新能源充电桩运行", "电力负荷", "绿电交易"),
}
_SUFFIX: Final[dict[str, tuple[str, ...]]] = {
    "dataset": ("数据集", "日度数据集", "历史数据集", "高精度数据集"),
    "api": ("查询接口", "实时数据接口", "核验接口"),
    "report": ("分析报告", "月度研究报告", "指数报告"),
    "model": ("预测模型", "风险评估模型", "行业大模型"),
    "service": ("数据服务", "定制分析服务", "数据标注服务"),
    "compute": ("算力服务", "隐私计算服务", "数据沙箱服务"),
}


def product_title(rng: random.Random, city: str, sector: str, category: str) -> str:
    """e.g. '上海港口集装箱吞吐量日度数据集'."""
    return f"{city}{rng.choice(_TOPICS[sector])}{rng.choice(_SUFFIX[category])}"
