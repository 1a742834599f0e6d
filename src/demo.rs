//! `custclass seed-demo`: the electronics maker of DESIGN.md, for walk-throughs and demos.

use serde_json::json;

use crate::db::DbConnection;
use crate::domain::attribute::{AttributeKey, DefinitionDraft, ValueType};
use crate::domain::category::{CategoryCode, CategoryName};
use crate::domain::customer::{CustomerCode, CustomerStatus, TaxId};
use crate::domain::sales::{ExternalId, Money};
use crate::domain::scheme::SchemeCode;
use crate::error::{AppError, ErrorCode};
use crate::store::archive::customers::{self, CustomerFields, NewCustomer};
use crate::store::archive::transactions::{self, NewTransaction};
use crate::store::catalogue::attributes;
use crate::store::catalogue::categories::{self, NewCategory};
use crate::store::catalogue::rules::{self, NewRule};
use crate::store::catalogue::schemes::{self, NewScheme, SchemeChanges};

pub const DEMO_CUSTOMERS: usize = 300;
const ACTOR: &str = "seed-demo";

/// Scheme code, name, code rule, required, and its categories (code, name).
type SchemeSpec = (&'static str, &'static str, &'static str, bool, &'static [(&'static str, &'static str)]);

const SCHEMES: [SchemeSpec; 3] = [
    (
        "INDUSTRY",
        "行业分类",
        "2-2",
        false,
        &[
            ("01", "电子行业客户"),
            ("0101", "消费电子"),
            ("0102", "半导体"),
            ("0103", "通信设备"),
            ("02", "制造行业客户"),
            ("0201", "汽车零部件"),
            ("0202", "机械设备"),
            ("0203", "精密制造"),
        ],
    ),
    (
        "REGION",
        "地区分类",
        "2-2",
        false,
        &[
            ("01", "华北地区客户"),
            ("0101", "北京"),
            ("0102", "天津"),
            ("0103", "河北"),
            ("02", "华南地区客户"),
            ("0201", "广东"),
            ("0202", "广西"),
            ("0203", "海南"),
            ("03", "华东地区客户"),
            ("0301", "上海"),
            ("0302", "浙江"),
            ("0303", "江苏"),
        ],
    ),
    ("TIER", "客户等级", "2", true, &[("01", "VIP客户"), ("02", "普通客户"), ("03", "潜在客户")]),
];

/// City, region leaf, administrative division code (for the tax id).
const CITIES: [(&str, &str, &str); 10] = [
    ("北京", "0101", "110108"),
    ("天津", "0102", "120116"),
    ("石家庄", "0103", "130100"),
    ("深圳", "0201", "440300"),
    ("广州", "0201", "440100"),
    ("南宁", "0202", "450100"),
    ("海口", "0203", "460100"),
    ("上海", "0301", "310115"),
    ("杭州", "0302", "330100"),
    ("南京", "0303", "320100"),
];
const BRANDS: [&str; 12] =
    ["华电", "星海", "联创", "恒通", "远景", "新锐", "博达", "天瑞", "金桥", "鼎盛", "中科", "瑞芯"];
const TRADES: [(&str, &str); 6] = [
    ("电子", "0101"),
    ("半导体", "0102"),
    ("通信", "0103"),
    ("汽车零部件", "0201"),
    ("机械", "0202"),
    ("精密制造", "0203"),
];
const ORG_CHARS: &[u8] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";

/// A small deterministic generator, so every demo database is the same.
struct Sequence(u64);

impl Sequence {
    fn next(&mut self, below: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % below as u64) as usize
    }
}

const MANAGERS: [&str; 4] = ["王芳", "李伟", "张敏", "刘静"];

/// VIP customers get a discount rate (default 0.1) and must have an account
/// manager; the 华北 region keeps a credit limit (default 500,000).
fn define_attributes(conn: &mut DbConnection) -> Result<(), AppError> {
    let draft = |key: &str, label: &str, value_type: ValueType| -> Result<DefinitionDraft, AppError> {
        Ok(DefinitionDraft {
            key: field(AttributeKey::parse("key", key))?,
            label: label.into(),
            value_type,
            required: false,
            default: None,
            options: None,
            min: None,
            max: None,
        })
    };
    let definitions = [
        (
            "TIER",
            "01",
            DefinitionDraft {
                min: Some(json!(0)),
                max: Some(json!(0.5)),
                default: Some(json!(0.1)),
                ..draft("discount_rate", "折扣率", ValueType::Decimal)?
            },
        ),
        (
            "TIER",
            "01",
            DefinitionDraft {
                required: true,
                max: Some(json!(20)),
                ..draft("account_manager", "客户经理", ValueType::String)?
            },
        ),
        (
            "REGION",
            "01",
            DefinitionDraft {
                min: Some(json!(0)),
                default: Some(json!(500000)),
                ..draft("credit_limit", "信用额度", ValueType::Integer)?
            },
        ),
    ];
    for (scheme, category, draft) in definitions {
        let definition = draft.check().map_err(|_| AppError::internal("bad demo attribute definition"))?;
        attributes::create(conn, scheme, category, definition, false)?;
    }
    Ok(())
}

fn field<T>(result: Result<T, crate::domain::FieldError>) -> Result<T, AppError> {
    result.map_err(AppError::from)
}

pub fn seed(conn: &mut DbConnection) -> Result<usize, AppError> {
    if schemes::find(conn, "INDUSTRY")?.is_some() {
        return Err(AppError::new(ErrorCode::DuplicateCode, "the demo data is already there (scheme INDUSTRY exists)"));
    }
    for (code, name, rule, required, categories) in SCHEMES {
        let rule = rule.parse().map_err(|_| AppError::internal("bad demo code rule"))?;
        schemes::create(
            conn,
            NewScheme {
                code: field(SchemeCode::parse("code", code))?,
                name: name.into(),
                description: None,
                code_rule: rule,
                required,
                auto_classify: false,
                active: true,
                ordered: code == "TIER",
                schedule: None,
                tier_policy: None,
            },
        )?;
        for (order, (category, category_name)) in categories.iter().enumerate() {
            let new = NewCategory {
                code: field(CategoryCode::parse("code", category))?,
                name: field(CategoryName::parse("name", category_name))?,
                description: None,
                sort_order: order as i32,
                active: true,
                // TIER is ordered: VIP客户 (3) above 普通客户 (2) above 潜在客户 (1).
                rank: (code == "TIER").then(|| (categories.len() - order) as i32),
            };
            categories::create(conn, code, new)?;
        }
    }
    define_attributes(conn)?;
    let default_tier = SchemeChanges {
        default_category: Some(Some(field(CategoryCode::parse("default_category", "03"))?)),
        ..Default::default()
    };
    schemes::update(conn, "TIER", &default_tier, None)?;

    let mut random = Sequence(0x5eed_c0de_2026);
    let mut sales = Vec::new();
    for number in 1..=DEMO_CUSTOMERS {
        let (city, region, division) = CITIES[random.next(CITIES.len())];
        let brand = BRANDS[random.next(BRANDS.len())];
        let (trade, industry) = TRADES[random.next(TRADES.len())];
        let tier = match random.next(10) {
            0 => "01",
            1..=6 => "02",
            _ => "03",
        };
        // About one in twelve was entered without an industry: the unclassified customers that 数据清理 finds.
        let industry_known = random.next(12) != 0;
        let org: String = (0..9).map(|_| ORG_CHARS[random.next(ORG_CHARS.len())] as char).collect();
        let tax_id = TaxId::with_check_character(&format!("91{division}{org}"))
            .ok_or_else(|| AppError::internal("bad demo tax id"))?;
        let code = format!("C{number:04}");
        let new = NewCustomer {
            code: field(CustomerCode::parse("code", &code))?,
            fields: CustomerFields {
                name: format!("{city}{brand}{trade}有限公司"),
                short_name: Some(format!("{brand}{trade}")),
                tax_id: Some(tax_id),
                contact_name: Some(["王", "李", "张", "刘", "陈", "杨"][random.next(6)].to_string() + "经理"),
                phone: Some(format!("1{}{:09}", 3 + random.next(7), random.next(1_000_000_000))),
                email: Some(format!("sales{number}@example.com")),
                address: Some(format!("{city}市高新区{}号", 1 + random.next(300))),
                status: if random.next(20) == 0 { CustomerStatus::Inactive } else { CustomerStatus::Active },
                note: None,
            },
            categories: [("INDUSTRY", industry), ("REGION", region), ("TIER", tier)]
                .into_iter()
                .filter(|(scheme, _)| industry_known || *scheme != "INDUSTRY")
                .map(|(scheme, category)| Ok((scheme.to_string(), field(CategoryCode::parse(scheme, category))?)))
                .collect::<Result<_, AppError>>()?,
            attributes: match tier {
                "01" => [("account_manager".to_string(), json!(MANAGERS[random.next(MANAGERS.len())]))]
                    .into_iter()
                    .collect(),
                _ => Default::default(),
            },
            reason: Some("demo data".into()),
        };
        customers::create(conn, &new, ACTOR, None)?;
        sales.extend(demo_sales(&code, tier, &mut random)?);
    }
    transactions::ingest(conn, &sales)?;
    define_rules(conn)?;
    onboarded_a_year_ago(conn)?;
    Ok(DEMO_CUSTOMERS)
}

/// The example company took its archive into custclass a year ago: its customers and
/// their first categories date from then, so that this quarter's reports show only
/// what happened since (the walk-through's upgrades and the rules' downgrades).
fn onboarded_a_year_ago(conn: &mut DbConnection) -> Result<(), AppError> {
    use crate::db::schema::{assignment_history, customer_categories, customers as customer_table};
    use diesel::prelude::*;
    let then = crate::db::now() - chrono::Duration::days(365);
    diesel::update(customer_table::table)
        .set((customer_table::created_at.eq(then), customer_table::updated_at.eq(then)))
        .execute(conn)?;
    diesel::update(customer_categories::table).set(customer_categories::assigned_at.eq(then)).execute(conn)?;
    diesel::update(assignment_history::table).set(assignment_history::at.eq(then)).execute(conn)?;
    let ids: Vec<i64> = customer_table::table.select(customer_table::id).load(conn)?;
    crate::store::archive::customer_rows::refresh_snapshot(
        conn,
        crate::store::archive::customer_rows::SnapshotTarget::Reassigned(&ids),
        false,
    )
}

/// A customer's orders over the last two years: VIPs buy big, 潜在客户 rarely or long ago.
fn demo_sales(code: &str, tier: &str, random: &mut Sequence) -> Result<Vec<Result<NewTransaction, String>>, AppError> {
    let (orders, largest, latest_days) = match tier {
        "01" => (8, 400_000, 30),
        "02" => (4, 50_000, 60),
        _ => (random.next(2), 20_000, 200),
    };
    let now = crate::db::now();
    (0..orders)
        .map(|i| {
            let days_ago = (latest_days + random.next(700 - latest_days)) as i64;
            let amount = Money::from_cents(100 * (1 + random.next(largest)) as i64);
            Ok(Ok(NewTransaction {
                external_id: field(ExternalId::parse("external_id", &format!("DEMO-{code}-{i}")))?,
                customer_code: code.to_string(),
                amount,
                occurred_at: now - chrono::Duration::days(days_ago),
            }))
        })
        .collect()
}

/// The example's rules: a year's spend over 1,000,000 makes a VIP, no order in 180
/// days a 潜在客户, and any other order a 普通客户.
fn define_rules(conn: &mut DbConnection) -> Result<(), AppError> {
    let rules = [
        ("年消费超过100万为VIP客户", "01", 10, json!({"field": "spend_12m", "op": ">", "value": 1000000})),
        (
            "180天无订单为潜在客户",
            "03",
            20,
            json!({"any": [{"field": "days_since_last_order", "op": ">", "value": 180}, {"field": "last_order_at", "op": "is_null", "value": true}]}),
        ),
        ("有订单为普通客户", "02", 30, json!({"field": "orders_12m", "op": ">=", "value": 1})),
    ];
    for (name, target, priority, condition) in rules {
        let target_category = field(CategoryCode::parse("target_category", target))?;
        rules::create(
            conn,
            "TIER",
            &NewRule { name: name.into(), target_category, priority, enabled: true, condition, population: None },
        )?;
    }
    Ok(())
}
