// Written by hand to match migrations/mysql and migrations/sqlite; both backends share it.

diesel::table! {
    schemes (id) {
        id -> BigInt,
        code -> Text,
        name -> Text,
        description -> Nullable<Text>,
        code_rule -> Text,
        required -> Bool,
        default_category -> Nullable<Text>,
        auto_classify -> Bool,
        active -> Bool,
        version -> BigInt,
        ordered -> Bool,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        schedule -> Nullable<Text>,
        schedule_next_at -> Nullable<Timestamp>,
        tier_policy -> Nullable<Text>,
    }
}

diesel::table! {
    categories (id) {
        id -> BigInt,
        scheme_id -> BigInt,
        code -> Text,
        parent_code -> Text,
        level -> Integer,
        name -> Text,
        description -> Nullable<Text>,
        sort_order -> Integer,
        active -> Bool,
        version -> BigInt,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        tier_rank -> Nullable<Integer>,
    }
}

diesel::table! {
    customers (id) {
        id -> BigInt,
        code -> Text,
        name -> Text,
        short_name -> Nullable<Text>,
        tax_id -> Nullable<Text>,
        contact_name -> Nullable<Text>,
        phone -> Nullable<Text>,
        email -> Nullable<Text>,
        address -> Nullable<Text>,
        status -> Text,
        note -> Nullable<Text>,
        classification -> Text,
        attributes -> Nullable<Text>,
        version -> BigInt,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        pending -> Nullable<Text>,
    }
}

diesel::table! {
    customer_categories (customer_id, scheme_id) {
        customer_id -> BigInt,
        scheme_id -> BigInt,
        category_id -> BigInt,
        category_code -> Text,
        locked -> Bool,
        assigned_at -> Timestamp,
    }
}

diesel::table! {
    api_keys (id) {
        id -> BigInt,
        name -> Text,
        scope -> Text,
        secret_hash -> Text,
        prefix -> Text,
        created_at -> Timestamp,
        revoked_at -> Nullable<Timestamp>,
        restriction -> Nullable<Text>,
    }
}

diesel::table! {
    assignment_history (id) {
        id -> BigInt,
        customer_code -> Text,
        scheme_code -> Text,
        from_category -> Nullable<Text>,
        to_category -> Nullable<Text>,
        at -> Timestamp,
        actor -> Text,
        source -> Text,
        reason -> Nullable<Text>,
        rule_id -> Nullable<BigInt>,
        run_id -> Nullable<BigInt>,
        dropped_attributes -> Nullable<Text>,
        direction -> Text,
        customer_id -> Nullable<BigInt>,
    }
}

diesel::table! {
    category_members (customer_id, scheme_id, category_code) {
        customer_id -> BigInt,
        scheme_id -> BigInt,
        category_code -> Text,
        customer_code -> Text,
        classification_vector -> Text,
    }
}

diesel::table! {
    attribute_definitions (id) {
        id -> BigInt,
        scheme_id -> BigInt,
        category_id -> BigInt,
        category_code -> Text,
        attr_key -> Text,
        label -> Text,
        value_type -> Text,
        required -> Bool,
        default_value -> Nullable<Text>,
        options -> Nullable<Text>,
        min_value -> Nullable<Text>,
        max_value -> Nullable<Text>,
        version -> BigInt,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    customer_attributes (customer_id, attr_key) {
        customer_id -> BigInt,
        attr_key -> Text,
        customer_code -> Text,
        value_json -> Text,
        value_text -> Nullable<Text>,
        value_number -> Nullable<Double>,
        from_default -> Bool,
    }
}

diesel::table! {
    transactions (id) {
        id -> BigInt,
        external_id -> Text,
        customer_id -> BigInt,
        amount_cents -> BigInt,
        occurred_at -> Timestamp,
        received_at -> Timestamp,
        batch_id -> Text,
    }
}

diesel::table! {
    rules (id) {
        id -> BigInt,
        scheme_id -> BigInt,
        name -> Text,
        target_category -> Text,
        priority -> Integer,
        enabled -> Bool,
        rule_condition -> Text,
        version -> BigInt,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        population -> Nullable<Text>,
    }
}

diesel::table! {
    classification_runs (id) {
        id -> BigInt,
        scheme_id -> BigInt,
        running_scheme_id -> Nullable<BigInt>,
        status -> Text,
        dry_run -> Bool,
        trigger_source -> Text,
        actor -> Text,
        as_of -> Timestamp,
        totals -> Text,
        error -> Nullable<Text>,
        started_at -> Timestamp,
        heartbeat_at -> Timestamp,
        finished_at -> Nullable<Timestamp>,
        stop_requested_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    run_change_blocks (id) {
        id -> BigInt,
        run_id -> BigInt,
        changes -> Text,
    }
}

diesel::table! {
    deleted_customers (id) {
        id -> BigInt,
        customer_code -> Text,
        created_at -> Timestamp,
        deleted_at -> Timestamp,
    }
}

diesel::table! {
    sales_totals (customer_id) {
        customer_id -> BigInt,
        spend_cents -> BigInt,
        orders -> BigInt,
        earlier_spend_cents -> BigInt,
        earlier_orders -> BigInt,
        last_order_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    merged_customers (customer_code) {
        customer_code -> Text,
        merged_into -> Text,
        merged_at -> Timestamp,
    }
}

diesel::table! {
    customer_match_keys (customer_id) {
        customer_id -> BigInt,
        name_key -> Text,
        phone_key -> Nullable<Text>,
        email_key -> Nullable<Text>,
    }
}

diesel::joinable!(transactions -> customers (customer_id));
diesel::joinable!(customer_match_keys -> customers (customer_id));
diesel::joinable!(rules -> schemes (scheme_id));
diesel::joinable!(classification_runs -> schemes (scheme_id));
diesel::joinable!(attribute_definitions -> schemes (scheme_id));
diesel::joinable!(customer_attributes -> customers (customer_id));
diesel::joinable!(categories -> schemes (scheme_id));
diesel::joinable!(category_members -> customers (customer_id));
diesel::joinable!(customer_categories -> schemes (scheme_id));
diesel::joinable!(customer_categories -> customers (customer_id));
diesel::joinable!(customer_categories -> categories (category_id));

diesel::allow_tables_to_appear_in_same_query!(
    schemes,
    tier_holds,
    categories,
    customers,
    customer_categories,
    api_keys,
    assignment_history,
    category_members,
    attribute_definitions,
    customer_attributes,
    transactions,
    rules,
    classification_runs,
    run_change_blocks,
    deleted_customers,
    customer_match_keys,
    merged_customers
);

diesel::table! {
    imports (id) {
        id -> Text,
        status -> Text,
        format -> Text,
        mode -> Text,
        atomic -> Bool,
        dry_run -> Bool,
        actor -> Text,
        rows_total -> Nullable<BigInt>,
        rows_done -> BigInt,
        report -> Nullable<Text>,
        started_at -> Timestamp,
        heartbeat_at -> Timestamp,
        finished_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    events (id) {
        id -> BigInt,
        position -> Nullable<BigInt>,
        event_type -> Text,
        occurred_at -> Timestamp,
        data -> Text,
        event_count -> Integer,
    }
}

diesel::table! {
    event_sequence (id) {
        id -> BigInt,
        last_position -> BigInt,
        pruned_through -> BigInt,
    }
}

diesel::table! {
    webhooks (id) {
        id -> BigInt,
        url -> Text,
        description -> Nullable<Text>,
        types -> Nullable<Text>,
        secret -> Text,
        previous_secret -> Nullable<Text>,
        previous_secret_until -> Nullable<Timestamp>,
        enabled -> Bool,
        disabled_reason -> Nullable<Text>,
        delivered_through -> BigInt,
        failures -> Integer,
        failing_since -> Nullable<Timestamp>,
        next_attempt_at -> Nullable<Timestamp>,
        lease_owner -> Nullable<Text>,
        lease_until -> Nullable<Timestamp>,
        created_by -> Text,
        version -> BigInt,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        restriction -> Nullable<Text>,
    }
}

diesel::table! {
    webhook_deliveries (id) {
        id -> BigInt,
        webhook_id -> BigInt,
        event_position -> BigInt,
        event_type -> Text,
        attempt -> Integer,
        outcome -> Text,
        response_status -> Nullable<Integer>,
        duration_ms -> BigInt,
        error -> Nullable<Text>,
        attempted_at -> Timestamp,
    }
}

diesel::table! {
    tier_holds (scheme_id, customer_id) {
        scheme_id -> BigInt,
        customer_id -> BigInt,
        category_code -> Text,
        assigned_at -> Timestamp,
        failed_runs -> Integer,
        run_id -> BigInt,
    }
}

diesel::table! {
    pending_changes (id) {
        id -> BigInt,
        customer_id -> BigInt,
        customer_code -> Text,
        scheme_code -> Text,
        category_code -> Text,
        locked -> Nullable<Bool>,
        attributes -> Nullable<Text>,
        effective_at -> Timestamp,
        actor -> Text,
        reason -> Nullable<Text>,
        status -> Text,
        failure -> Nullable<Text>,
        settled_at -> Nullable<Timestamp>,
        version -> BigInt,
        created_at -> Timestamp,
    }
}
