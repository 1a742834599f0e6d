//! A category is never deleted under a write that places customers in it: the delete
//! waits for the write or is refused, or the write finds the category gone and places
//! no one there. Raced 20 rounds each against imports (atomic and not), batch
//! assignments and classification runs, then every assignment and membership is
//! checked against the categories.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{insert_customers_directly, ok_json, with_connection, TestApp};

both_backends!(deletes_race_imports_batch_assignments_and_runs_and_orphan_no_one);

const ROUNDS: usize = 20;
const CUSTOMERS: usize = 300;

/// Assignments and memberships whose category does not exist.
async fn orphans(app: &TestApp) -> (i64, i64) {
    with_connection(app, |conn| {
        use diesel::RunQueryDsl;
        let count = |conn: &mut custclass::db::DbConnection, query: &str| -> i64 {
            diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(query)).get_result(conn).unwrap()
        };
        let assignments = count(conn, "(SELECT COUNT(*) FROM customer_categories cc LEFT JOIN categories c ON c.id = cc.category_id WHERE c.id IS NULL)");
        let members = count(
            conn,
            "(SELECT COUNT(*) FROM category_members m LEFT JOIN categories c ON c.scheme_id = m.scheme_id AND c.code = m.category_code WHERE c.id IS NULL)",
        );
        (assignments, members)
    })
    .await
}

/// Deletes the category while `write` runs; returns the delete's status.
async fn delete_during(app: &TestApp, code: &str, write: impl std::future::Future<Output = ()>) -> StatusCode {
    let delete = async {
        let response = app.delete(&format!("/api/v1/schemes/ZONE/categories/{code}")).await;
        let status = response.status();
        let body: Value = if status == StatusCode::NO_CONTENT { Value::Null } else { response.json().await.unwrap() };
        assert!(
            status == StatusCode::NO_CONTENT
                || (status == StatusCode::CONFLICT
                    && ["category_in_use", "concurrent_update", "referenced"]
                        .contains(&body["code"].as_str().unwrap())),
            "the delete either goes through or is refused: {status} {body}"
        );
        status
    };
    let (status, ()) = tokio::join!(delete, write);
    status
}

async fn holders(app: &TestApp, code: &str) -> Option<i64> {
    let response = app.get(&format!("/api/v1/schemes/ZONE/categories/{code}")).await;
    if response.status() == StatusCode::NOT_FOUND {
        return None;
    }
    ok_json(response, StatusCode::OK).await["customer_count"].as_i64()
}

async fn deletes_race_imports_batch_assignments_and_runs_and_orphan_no_one(app: TestApp) {
    app.create_scheme("ZONE", "2").await;

    for round in 0..ROUNDS {
        let code = format!("{:02}", 10 + round);
        app.create_category("ZONE", &code, &format!("进口区{round}")).await;
        let mut csv = String::from("code,name,category:ZONE\n");
        for row in 0..CUSTOMERS {
            csv.push_str(&format!("I{round:02}{row:04},进口客户{row},{code}\n"));
        }
        let atomic = round % 2 == 0;
        let import = async {
            let sent = app
                .admin(Method::POST, &format!("/api/v1/imports/customers?atomic={atomic}"))
                .header("Content-Type", "text/csv")
                .body(csv)
                .send()
                .await
                .unwrap();
            let status = sent.status();
            let body: Value = sent.json().await.unwrap();
            assert!(
                status.is_success() || status == StatusCode::UNPROCESSABLE_ENTITY || status == StatusCode::CONFLICT,
                "{status} {body}"
            );
        };
        let deleted = delete_during(&app, &code, import).await;
        let held = holders(&app, &code).await;
        if deleted == StatusCode::NO_CONTENT {
            assert_eq!(held, None, "round {round}: deleted");
        }
    }

    let codes = insert_customers_directly(&app, "B", CUSTOMERS).await;
    for round in 0..ROUNDS {
        let code = format!("{:02}", 50 + round);
        app.create_category("ZONE", &code, &format!("批量区{round}")).await;
        let batch = async {
            let moved = app
                .post("/api/v1/assignments/batch", &json!({"scheme": "ZONE", "category": code, "customers": codes}))
                .await;
            let status = moved.status();
            let body: Value = moved.json().await.unwrap();
            assert!(
                status.is_success() || [StatusCode::UNPROCESSABLE_ENTITY, StatusCode::CONFLICT].contains(&status),
                "{status} {body}"
            );
        };
        let deleted = delete_during(&app, &code, batch).await;
        if deleted == StatusCode::NO_CONTENT {
            assert_eq!(holders(&app, &code).await, None, "round {round}: deleted");
        }
    }

    for round in 0..ROUNDS {
        let code = format!("{:02}", 80 + round);
        app.create_category("ZONE", &code, &format!("规则区{round}")).await;
        let rule = json!({"name": format!("everyone to {code}"), "target_category": code, "condition": {"field": "code", "op": "!=", "value": "NONE"}});
        let rule = ok_json(app.post("/api/v1/schemes/ZONE/rules", &rule).await, StatusCode::CREATED).await;
        let run = async {
            let ran = app.post("/api/v1/schemes/ZONE/classification-runs", &json!({})).await;
            let status = ran.status();
            let body: Value = ran.json().await.unwrap();
            assert!(
                status.is_success() || [StatusCode::UNPROCESSABLE_ENTITY, StatusCode::CONFLICT].contains(&status),
                "{status} {body}"
            );
        };
        let deleted = delete_during(&app, &code, run).await;
        if deleted == StatusCode::NO_CONTENT {
            assert_eq!(holders(&app, &code).await, None, "round {round}: deleted");
        }
        assert_eq!(
            app.delete(&format!("/api/v1/schemes/ZONE/rules/{}", rule["id"])).await.status(),
            StatusCode::NO_CONTENT
        );
    }

    assert_eq!(orphans(&app).await, (0, 0), "no assignment or membership points at a deleted category");
    let distribution = ok_json(app.get("/api/v1/reports/distribution?scheme=ZONE").await, StatusCode::OK).await;
    for row in distribution["rows"].as_array().unwrap() {
        assert!(row["name"].is_string(), "every counted category exists: {row}");
    }
    with_connection(&app, |conn| custclass::store::reporting::counts::recount(conn).unwrap()).await;
    let recounted = ok_json(app.get("/api/v1/reports/distribution?scheme=ZONE").await, StatusCode::OK).await;
    assert_eq!(recounted["rows"], distribution["rows"], "the counters the racing writes left equal a recount");
}
