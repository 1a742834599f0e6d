//! Ordered schemes: ranks on categories, and the direction of every move
//! (客户升级/降级) in history and in classification runs.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{ok_json, problem, with_connection, TestApp};

both_backends!(
    moves_in_an_ordered_scheme_go_up_or_down,
    ranks_belong_to_ordered_schemes,
    runs_count_upgrades_and_downgrades,
    the_migration_gives_stored_history_a_direction
);

/// TIER, ordered: 01 VIP客户 (rank 3), 02 普通客户 (2), 03 潜在客户 (1), and 04 试用客户 without a rank.
async fn ordered_tiers(app: &TestApp) {
    let scheme = ok_json(
        app.post("/api/v1/schemes", &json!({"code": "TIER", "name": "客户等级", "code_rule": "2", "ordered": true}))
            .await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(scheme["ordered"], true);
    for (code, name, rank) in [
        ("01", "VIP客户", json!(3)),
        ("02", "普通客户", json!(2)),
        ("03", "潜在客户", json!(1.0)),
        ("04", "试用客户", json!(null)),
    ] {
        let category = ok_json(
            app.post("/api/v1/schemes/TIER/categories", &json!({"code": code, "name": name, "rank": rank})).await,
            StatusCode::CREATED,
        )
        .await;
        assert_eq!(category["rank"], if rank.is_null() { json!(null) } else { json!(rank.as_f64().unwrap() as i64) });
    }
}

fn directions(history: &[Value]) -> Vec<(String, String, String)> {
    history
        .iter()
        .map(|e| {
            (
                e["from"].as_str().unwrap_or("-").to_string(),
                e["to"].as_str().unwrap_or("-").to_string(),
                e["direction"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

async fn moves_in_an_ordered_scheme_go_up_or_down(app: TestApp) {
    ordered_tiers(&app).await;
    app.create_customer("C1", json!({"TIER": "03"})).await;
    app.create_customer("C2", json!({})).await;
    ok_json(app.assign("C1", "TIER", "01").await, StatusCode::OK).await;
    ok_json(app.assign("C1", "TIER", "02").await, StatusCode::OK).await;
    ok_json(app.assign("C1", "TIER", "04").await, StatusCode::OK).await;
    // A batch writes one shared entry per origin: C1 from 04 (no rank), C2 from nowhere.
    let batch = ok_json(
        app.post("/api/v1/assignments/batch", &json!({"scheme": "TIER", "category": "01", "customers": ["C1", "C2"]}))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(batch["changed"], 2);
    ok_json(app.assign("C2", "TIER", "03").await, StatusCode::OK).await;
    let removed = app.admin(Method::DELETE, "/api/v1/customers/C2/categories/TIER").send().await.unwrap();
    assert_eq!(removed.status(), StatusCode::OK);

    // A later change of ranks does not rewrite the past.
    ok_json(app.patch("/api/v1/schemes/TIER/categories/02", &json!({"rank": 9})).await, StatusCode::OK).await;
    let c1 = app.full_history("C1").await;
    assert_eq!(
        directions(&c1),
        [
            ("-".into(), "03".into(), "in".into()),
            ("03".into(), "01".into(), "up".into()),
            ("01".into(), "02".into(), "down".into()),
            ("02".into(), "04".into(), "lateral".into()),
            ("04".into(), "01".into(), "lateral".into()),
        ]
    );
    let c2 = app.full_history("C2").await;
    assert_eq!(
        directions(&c2),
        [
            ("-".into(), "01".into(), "in".into()),
            ("01".into(), "03".into(), "down".into()),
            ("03".into(), "-".into(), "out".into())
        ]
    );
    ok_json(app.assign("C1", "TIER", "02").await, StatusCode::OK).await;
    let latest = ok_json(app.get("/api/v1/customers/C1/history?limit=1").await, StatusCode::OK).await;
    assert_eq!(latest["items"][0]["direction"], "up", "02 now ranks 9, above 01's 3");

    // Turned unordered, the scheme keeps its ranks, and moves are lateral from then on.
    ok_json(app.patch("/api/v1/schemes/TIER", &json!({"ordered": false})).await, StatusCode::OK).await;
    ok_json(app.assign("C1", "TIER", "03").await, StatusCode::OK).await;
    let latest = ok_json(app.get("/api/v1/customers/C1/history?limit=1").await, StatusCode::OK).await;
    assert_eq!(latest["items"][0]["direction"], "lateral");
    let tree = ok_json(app.get("/api/v1/schemes/TIER/categories/tree").await, StatusCode::OK).await;
    let ranks: Vec<_> = tree["items"].as_array().unwrap().iter().map(|n| n["rank"].clone()).collect();
    assert_eq!(ranks, [json!(3), json!(9), json!(1), json!(null)]);
}

async fn ranks_belong_to_ordered_schemes(app: TestApp) {
    app.create_scheme("REGION", "2").await;
    let refused = problem(
        app.post("/api/v1/schemes/REGION/categories", &json!({"code": "01", "name": "华北", "rank": 1})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "scheme_not_ordered",
    )
    .await;
    assert_eq!(refused["errors"][0]["field"], "rank");
    problem(app.get("/api/v1/schemes/REGION/categories/01").await, StatusCode::NOT_FOUND, "category_not_found").await;
    app.create_category("REGION", "01", "华北").await;
    let refused = problem(
        app.patch("/api/v1/schemes/REGION/categories/01", &json!({"rank": 2})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "scheme_not_ordered",
    )
    .await;
    assert_eq!(refused["errors"][0]["field"], "rank");
    let unchanged = ok_json(app.get("/api/v1/schemes/REGION/categories/01").await, StatusCode::OK).await;
    assert_eq!((unchanged["rank"].clone(), unchanged["version"].clone()), (json!(null), json!(1)));

    let scheme = ok_json(app.patch("/api/v1/schemes/REGION", &json!({"ordered": true})).await, StatusCode::OK).await;
    assert_eq!(scheme["ordered"], true);
    let ranked =
        ok_json(app.patch("/api/v1/schemes/REGION/categories/01", &json!({"rank": 2})).await, StatusCode::OK).await;
    assert_eq!(ranked["rank"], 2);
    let kept =
        ok_json(app.patch("/api/v1/schemes/REGION/categories/01", &json!({"name": "华北地区"})).await, StatusCode::OK)
            .await;
    assert_eq!(kept["rank"], 2, "an absent rank stays");
    let cleared =
        ok_json(app.patch("/api/v1/schemes/REGION/categories/01", &json!({"rank": null})).await, StatusCode::OK).await;
    assert_eq!(cleared["rank"], json!(null));
    problem(
        app.patch("/api/v1/schemes/REGION/categories/01", &json!({"rank": 1.5})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_body",
    )
    .await;
}

async fn runs_count_upgrades_and_downgrades(app: TestApp) {
    ordered_tiers(&app).await;
    for (code, tier) in [("C1", "03"), ("C2", "01"), ("C3", "02"), ("C4", "04")] {
        app.create_customer(code, json!({"TIER": tier})).await;
    }
    let rules = [
        ("C1 升级", "01", json!({"field": "code", "op": "in", "value": ["C1"]})),
        ("C2 降级", "03", json!({"field": "code", "op": "in", "value": ["C2"]})),
        ("C4 转正", "02", json!({"field": "code", "op": "in", "value": ["C4"]})),
    ];
    for (priority, (name, target, condition)) in rules.into_iter().enumerate() {
        let body = json!({"name": name, "target_category": target, "priority": priority, "condition": condition});
        ok_json(app.post("/api/v1/schemes/TIER/rules", &body).await, StatusCode::CREATED).await;
    }
    let run =
        ok_json(app.post("/api/v1/schemes/TIER/classification-runs", &json!({})).await, StatusCode::CREATED).await;
    assert_eq!(
        (run["changed"].clone(), run["up"].clone(), run["down"].clone()),
        (json!(3), json!(1), json!(1)),
        "C4 had no rank: lateral"
    );
    let changes = ok_json(
        app.get(&format!("/api/v1/schemes/TIER/classification-runs/{}/changes", run["id"])).await,
        StatusCode::OK,
    )
    .await;
    let mut moved: Vec<_> = changes["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["customer"].as_str().unwrap().to_string(), c["direction"].as_str().unwrap().to_string()))
        .collect();
    moved.sort();
    assert_eq!(
        moved,
        [("C1".to_string(), "up".to_string()), ("C2".into(), "down".into()), ("C4".into(), "lateral".into())]
    );
    let latest = ok_json(app.get("/api/v1/customers/C2/history?limit=1").await, StatusCode::OK).await;
    assert_eq!(
        (latest["items"][0]["source"].clone(), latest["items"][0]["direction"].clone()),
        (json!("rule"), json!("down"))
    );
}

/// Undoes the tier-order migration behind the app's back and applies it again, as an
/// upgrade from the version before it would: stored history gets in, out or lateral
/// (no scheme was ordered before), whatever the ranks say.
async fn the_migration_gives_stored_history_a_direction(app: TestApp) {
    use custclass::db::DbConnection;
    use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
    const MYSQL: EmbeddedMigrations = embed_migrations!("migrations/mysql");
    const SQLITE: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
    // History's customer ids, tier holds, pending changes, import branches, relative segmentation, run stops, scheme schedules, event groups, key restrictions, webhooks, events, imports, merged customers, duplicate keys, the period index with customer codes, sales totals, report counts, tier order.
    const REVERTED: [&str; 19] = [
        "20261208000026",
        "20261207000025",
        "20261207000024",
        "20261207000023",
        "20261206000022",
        "20261205000021",
        "20261205000020",
        "20261205000019",
        "20261205000018",
        "20261205000017",
        "20261205000016",
        "20261205000015",
        "20261205000014",
        "20261205000013",
        "20261205000012",
        "20261205000011",
        "20261127000010",
        "20261127000009",
        "20261127000008",
    ];

    ordered_tiers(&app).await;
    app.create_customer("C1", json!({"TIER": "03"})).await;
    ok_json(app.assign("C1", "TIER", "01").await, StatusCode::OK).await;
    let removed = app.admin(Method::DELETE, "/api/v1/customers/C1/categories/TIER").send().await.unwrap();
    assert_eq!(removed.status(), StatusCode::OK);
    assert_eq!(
        directions(&app.full_history("C1").await).into_iter().map(|d| d.2).collect::<Vec<_>>(),
        ["in", "up", "out"]
    );
    app.create_customer("C2", json!({"TIER": "02"})).await;
    let counted = ok_json(app.get("/api/v1/reports/distribution?scheme=TIER").await, StatusCode::OK).await;

    with_connection(&app, |conn| {
        match conn {
            // Back to before the tier order, the later migrations' down.sql on the way.
            DbConnection::Mysql(conn) => {
                let reverted: Vec<String> =
                    (0..REVERTED.len()).map(|_| conn.revert_last_migration(MYSQL).unwrap().to_string()).collect();
                assert_eq!(reverted, REVERTED);
                conn.run_pending_migrations(MYSQL).unwrap();
            }
            DbConnection::Sqlite(conn) => {
                let reverted: Vec<String> =
                    (0..REVERTED.len()).map(|_| conn.revert_last_migration(SQLITE).unwrap().to_string()).collect();
                assert_eq!(reverted, REVERTED);
                conn.run_pending_migrations(SQLITE).unwrap();
            }
        }
    })
    .await;
    assert_eq!(
        directions(&app.full_history("C1").await).into_iter().map(|d| d.2).collect::<Vec<_>>(),
        ["in", "lateral", "out"]
    );
    let scheme = ok_json(app.get("/api/v1/schemes/TIER").await, StatusCode::OK).await;
    assert_eq!(scheme["ordered"], false, "schemes start unordered");
    // The report-counts migration counted what was stored.
    let recounted = ok_json(app.get("/api/v1/reports/distribution?scheme=TIER").await, StatusCode::OK).await;
    assert_eq!((recounted["population"].clone(), recounted["rows"][1]["customers"].clone()), (json!(2), json!(1)));
    assert_eq!(
        recounted["rows"].as_array().unwrap().iter().map(|r| r["customers"].clone()).collect::<Vec<_>>(),
        counted["rows"].as_array().unwrap().iter().map(|r| r["customers"].clone()).collect::<Vec<_>>()
    );
}
