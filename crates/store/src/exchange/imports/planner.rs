//! The planning side of an import: what each row of a chunk asks for, against what the archive holds.

use super::*;

impl Planner<'_> {
    /// Plans each chunk as it comes and hands it to the writer.
    pub(super) fn run(
        mut self,
        conn: &Shared,
        chunks: Receiver<Chunk>,
        planned: SyncSender<PlannedChunk>,
    ) -> Result<PlannerEnd, AppError> {
        for mut chunk in chunks {
            let plan = if chunk.rows.is_empty() { None } else { Some(self.plan(&mut **lock(conn)?, &chunk.rows)?) };
            // The rows are planned again only where a chunk commits on its own.
            if self.options.atomic || self.options.dry_run {
                chunk.rows = Vec::new();
            }
            if planned.send(PlannedChunk { chunk, plan }).is_err() {
                return Ok(PlannerEnd::WriterStopped);
            }
        }
        Ok(PlannerEnd::All)
    }

    /// Looks up what the archive holds of the chunk's customers and works out what each row asks for.
    pub(super) fn plan(&mut self, conn: &mut DbConnection, rows: &[RowEdit]) -> Result<Plan, AppError> {
        let codes: Vec<&str> = rows.iter().map(|row| row.code.as_ref().expect("checked").as_str()).collect();
        let existing: HashMap<String, CustomerRow> = customers::table
            .filter(customers::code.eq_any(&codes))
            .select(CustomerRow::as_select())
            .load::<CustomerRow>(conn)?
            .into_iter()
            .map(|row| (row.code.clone(), row))
            .collect();
        let tax_ids: Vec<&str> = rows
            .iter()
            .filter_map(|row| if let Edit::Set(t) = &row.tax_id { Some(t.as_str()) } else { None })
            .collect();
        let holders: HashMap<String, String> = if tax_ids.is_empty() {
            HashMap::new()
        } else {
            customers::table
                .filter(customers::tax_id.eq_any(&tax_ids))
                .select((customers::tax_id.assume_not_null(), customers::code))
                .load::<(String, String)>(conn)?
                .into_iter()
                .collect()
        };
        let ids: Vec<i64> = existing.values().map(|row| row.id).collect();
        let mut held: HashMap<i64, HashMap<i64, String>> = HashMap::new();
        let mut explicit: HashMap<i64, HashMap<String, String>> = HashMap::new();
        if !ids.is_empty() {
            for (customer, scheme, code) in customer_categories::table
                .filter(customer_categories::customer_id.eq_any(&ids))
                .select((
                    customer_categories::customer_id,
                    customer_categories::scheme_id,
                    customer_categories::category_code,
                ))
                .load::<(i64, i64, String)>(conn)?
            {
                held.entry(customer).or_default().insert(scheme, code);
            }
            for (customer, key, json) in customer_attributes::table
                .filter(customer_attributes::customer_id.eq_any(&ids))
                .filter(customer_attributes::from_default.eq(false))
                .select((
                    customer_attributes::customer_id,
                    customer_attributes::attr_key,
                    customer_attributes::value_json,
                ))
                .load::<(i64, String, String)>(conn)?
            {
                explicit.entry(customer).or_default().insert(key, json);
            }
        }

        let mut outcome = ChunkOutcome::default();
        let mut creating = Vec::new();
        let mut changing = Vec::new();
        let (no_categories, no_values) = (HashMap::new(), HashMap::new());
        for row in rows {
            let code = row.code.as_ref().expect("checked").as_str();
            let current = existing.get(code);
            let mut errors = Vec::new();
            if let Edit::Set(tax_id) = &row.tax_id {
                if holders.get(tax_id.as_str()).is_some_and(|holder| holder != code) {
                    errors.push(row_error(
                        row.row,
                        Some(&column(Field::TaxId)),
                        "duplicate_tax_id",
                        format!("another customer already has tax id {}", tax_id.as_str()),
                    ));
                }
            }
            let checked = match current {
                Some(current) if !visibility::admits_row(self.restriction, current)? => Err(vec![row_error(
                    row.row,
                    Some(&column(Field::Code)),
                    "outside_restriction",
                    format!("customer {code} is outside the categories this key may use"),
                )]),
                Some(_) if self.options.mode == ImportMode::Create => Err(vec![row_error(
                    row.row,
                    Some(&column(Field::Code)),
                    "duplicate_code",
                    format!("customer {code} already exists (mode=create)"),
                )]),
                Some(current) => self
                    .change(
                        row,
                        current,
                        held.get(&current.id).unwrap_or(&no_categories),
                        explicit.get(&current.id).unwrap_or(&no_values),
                    )
                    .map(|change| change.map(Planned::Change).unwrap_or(Planned::Nothing)),
                None => self.new_customer(row).map(Planned::New),
            };
            let checked = checked.and_then(|planned| match self.outside_restriction(row.row, &planned) {
                refused if refused.is_empty() => Ok(planned),
                refused => Err(refused),
            });
            match checked {
                Err(mut found) => {
                    errors.append(&mut found);
                    outcome.failed.push(errors);
                }
                Ok(_) if !errors.is_empty() => outcome.failed.push(errors),
                Ok(Planned::New(new)) => creating.push(new),
                Ok(Planned::Change(change)) => changing.push(change),
                Ok(Planned::Nothing) => outcome.unchanged += 1,
            }
        }
        let at = now();
        for new in &mut creating {
            let categories = new.placements.iter().filter_map(|(scheme_id, code, _)| {
                Some((self.catalogue.scheme_by_id(*scheme_id)?.code.as_str(), code.as_str()))
            });
            let values =
                new.values.iter().map(|(key, (value, from_default))| (key.as_str(), value.to_json(), *from_default));
            new.snapshots = new_snapshots(categories, at, values);
        }
        Ok(Plan { at, creating, changing, settled: outcome })
    }

    /// Where a row would put a customer outside the importing key's restriction: a new
    /// one without a category inside in a restricted scheme, a move out of the subtrees.
    fn outside_restriction(&self, row: u64, planned: &Planned) -> Vec<RowError> {
        let Some(restriction) = self.restriction else { return Vec::new() };
        let refused = |scheme: &str| {
            row_error(
                row,
                Some(&Column::Category(scheme.to_string())),
                "outside_restriction",
                format!("this key may only put customers in its subtrees of scheme {scheme}"),
            )
        };
        match planned {
            Planned::New(new) => {
                let held: Vec<(&str, &str)> = new
                    .placements
                    .iter()
                    .filter_map(|(id, code, _)| Some((self.catalogue.scheme_by_id(*id)?.code.as_str(), code.as_str())))
                    .collect();
                restriction
                    .schemes()
                    .filter(|(scheme, _)| {
                        !held
                            .iter()
                            .any(|(held_scheme, code)| held_scheme == scheme && restriction.allows(scheme, code))
                    })
                    .map(|(scheme, _)| refused(scheme))
                    .collect()
            }
            Planned::Change(change) => change
                .moves
                .iter()
                .filter(|(scheme, target)| {
                    visibility::ensure_allowed(Some(restriction), scheme, target.as_deref()).is_err()
                })
                .map(|(scheme, _)| refused(scheme))
                .collect(),
            Planned::Nothing => Vec::new(),
        }
    }

    fn catalogue(&mut self) -> &mut Catalogue {
        &mut self.catalogue
    }

    /// A new customer: a name, categories that take customers (named, or each active
    /// scheme's default), required schemes filled, and values that fit the definitions
    /// of where it goes.
    fn new_customer(&mut self, row: &RowEdit) -> Result<NewCustomer, Vec<RowError>> {
        let at = row.row;
        let mut errors = Vec::new();
        if row.name.is_none() {
            errors.push(row_error(
                at,
                Some(&column(Field::Name)),
                crate::domain::import::codes::REQUIRED,
                "a new customer needs a name",
            ));
        }
        let catalogue = &self.catalogue;
        let mut placements = Vec::new();
        for scheme in catalogue.schemes.values() {
            let named = row.categories.iter().find(|(code, _)| *code == scheme.code).map(|(_, edit)| edit);
            let category_column = Column::Category(scheme.code.clone());
            match named {
                Some(Edit::Set(code)) => match catalogue.refuse_category(scheme, code.as_str()) {
                    Some((problem, message)) => errors.push(row_error(at, Some(&category_column), problem, message)),
                    None => placements.push((scheme.id, code.as_str().to_string(), true)),
                },
                Some(Edit::Clear) | None if !scheme.active => {}
                Some(Edit::Keep) | None if scheme.default_category.is_some() => {
                    let default = scheme.default_category.clone().expect("checked");
                    match catalogue.refuse_category(scheme, &default) {
                        Some((problem, message)) => errors.push(row_error(
                            at,
                            Some(&category_column),
                            problem,
                            format!("the scheme's default category: {message}"),
                        )),
                        None => placements.push((scheme.id, default, false)),
                    }
                }
                _ if scheme.required => errors.push(row_error(
                    at,
                    Some(&category_column),
                    "category_required",
                    format!("scheme {} is required and has no default category", scheme.code),
                )),
                _ => {}
            }
        }
        let values = match self.values_of_new(row, &placements) {
            Ok(values) => values,
            Err(mut found) => {
                errors.append(&mut found);
                Desired::new()
            }
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        let text = |edit: &Edit<String>| edit.applied_to(None);
        Ok(NewCustomer {
            code: row.code.as_ref().expect("checked").as_str().to_string(),
            name: row.name.clone().expect("checked"),
            short_name: text(&row.short_name),
            tax_id: row.tax_id.applied_to(None).map(|t: TaxId| t.as_str().to_string()),
            contact_name: text(&row.contact_name),
            phone: text(&row.phone),
            email: text(&row.email),
            address: text(&row.address),
            status: row.status.unwrap_or(CustomerStatus::Active),
            note: text(&row.note),
            placements,
            values,
            snapshots: Default::default(),
        })
    }

    fn values_of_new(&mut self, row: &RowEdit, placements: &[(i64, String, bool)]) -> Result<Desired, Vec<RowError>> {
        let at = row.row;
        let fail = |e: AppError| {
            vec![RowError { row: at, column: None, code: e.code.to_string(), message: e.detail, byte: None }]
        };
        let mut in_force: BTreeMap<String, Effective> = BTreeMap::new();
        for (scheme_id, code, _) in placements {
            let scheme = self.catalogue().scheme_by_id(*scheme_id).cloned().expect("placed in a known scheme");
            for effective in self.catalogue().in_force(&scheme, code).map_err(fail)? {
                in_force.insert(effective.row.attr_key.clone(), effective.clone());
            }
        }
        let mut errors = Vec::new();
        let mut desired = Desired::new();
        for (key, cell) in &row.attributes {
            let attribute_column = Column::Attribute(key.clone());
            let Some(effective) = in_force.get(key) else {
                errors.push(row_error(
                    at,
                    Some(&attribute_column),
                    "attribute_not_defined",
                    format!("no category of the customer defines attribute {key}"),
                ));
                continue;
            };
            let Cell::Given(value) = cell else { continue };
            match attribute_json(effective.definition.value_type, value)
                .and_then(|json| effective.definition.check(&json))
            {
                Ok(value) => {
                    desired.insert(key.clone(), (value, false));
                }
                Err(message) => errors.push(row_error(
                    at,
                    Some(&attribute_column),
                    crate::domain::import::codes::INVALID_VALUE,
                    message,
                )),
            }
        }
        for (key, effective) in &in_force {
            if desired.contains_key(key)
                || errors.iter().any(|e| e.column.as_deref() == Some(&Column::Attribute(key.clone()).header()))
            {
                continue;
            }
            match &effective.definition.default {
                Some(default) => {
                    desired.insert(key.clone(), (default.clone(), true));
                }
                None if effective.definition.required => errors.push(row_error(
                    at,
                    Some(&Column::Attribute(key.clone())),
                    "attribute_required",
                    format!("required by category {}, and it has no default", effective.row.category_code),
                )),
                None => {}
            }
        }
        if errors.is_empty() {
            Ok(desired)
        } else {
            Err(errors)
        }
    }

    /// What a row changes of an existing customer; `None` when nothing.
    fn change(
        &mut self,
        row: &RowEdit,
        current: &CustomerRow,
        held: &HashMap<i64, String>,
        explicit: &HashMap<String, String>,
    ) -> Result<Option<Change>, Vec<RowError>> {
        fn differs<T: Clone + PartialEq>(edit: &Edit<T>, current: Option<T>) -> Option<Option<T>> {
            let after = edit.applied_to(current.clone());
            (after != current).then_some(after)
        }
        let text = |edit: &Edit<String>, current: &Option<String>| differs(edit, current.clone());
        let fields = CustomerChanges {
            name: row.name.clone().filter(|name| *name != current.name),
            short_name: text(&row.short_name, &current.short_name),
            tax_id: differs(
                &row.tax_id.clone(),
                current.tax_id.as_deref().map(|t| TaxId::parse("tax_id", t)).and_then(Result::ok),
            ),
            contact_name: text(&row.contact_name, &current.contact_name),
            phone: text(&row.phone, &current.phone),
            email: text(&row.email, &current.email),
            address: text(&row.address, &current.address),
            status: row.status.filter(|status| *status != current.status),
            note: text(&row.note, &current.note),
            attributes: None,
        };
        let catalogue = &self.catalogue;
        let mut moves = Vec::new();
        for (scheme_code, edit) in &row.categories {
            let Some(scheme) = catalogue.schemes.get(scheme_code) else { continue };
            let now_in = held.get(&scheme.id);
            match edit {
                Edit::Set(code) if now_in.map(String::as_str) != Some(code.as_str()) => {
                    moves.push((scheme_code.clone(), Some(code.as_str().to_string())))
                }
                Edit::Clear if now_in.is_some() => moves.push((scheme_code.clone(), None)),
                _ => {}
            }
        }
        let mut errors = Vec::new();
        let mut values = BTreeMap::new();
        for (key, cell) in &row.attributes {
            let Some((_, value_type)) = catalogue.keys.get(key) else { continue };
            let stored = explicit.get(key).and_then(|json| serde_json::from_str::<Json>(json).ok());
            match cell {
                Cell::Null if stored.is_some() => {
                    values.insert(key.clone(), Json::Null);
                }
                Cell::Given(value) => match attribute_json(*value_type, value) {
                    Ok(json) if Some(&json) != stored.as_ref() => {
                        values.insert(key.clone(), json);
                    }
                    Ok(_) => {}
                    Err(message) => errors.push(row_error(
                        row.row,
                        Some(&Column::Attribute(key.clone())),
                        crate::domain::import::codes::INVALID_VALUE,
                        message,
                    )),
                },
                _ => {}
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let unchanged = !fields.any() && moves.is_empty() && values.is_empty();
        Ok((!unchanged).then(|| Change { row: row.row, code: current.code.clone(), fields, moves, values }))
    }
}
