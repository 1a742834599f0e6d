//! The writing side of an import: each planned chunk written in the import's transaction or its own,
//! and new customers created set-based.

use super::*;

impl Writer<'_> {
    /// Writes each chunk as it comes: in the import's transaction when atomic (and then
    /// the counts once, at the end), else in its own.
    pub(super) fn run(mut self, conn: &Shared, chunks: Receiver<PlannedChunk>) -> Result<Tally, AppError> {
        let in_one = self.options.atomic || self.options.dry_run;
        let mut counted = Counted::default();
        for PlannedChunk { chunk, plan } in chunks {
            self.tally.rows_done = chunk.rows_done;
            for errors in chunk.failures {
                self.tally.fail_row(errors);
            }
            let Some(plan) = plan else { continue };
            let conn = &mut **lock(conn)?;
            let outcome = if in_one {
                self.write_planned(conn, plan, &mut counted)?
            } else {
                self.write_alone(conn, plan, &chunk.rows)?
            };
            self.tally.created += outcome.created;
            self.tally.updated += outcome.updated;
            self.tally.unchanged += outcome.unchanged;
            for errors in outcome.failed {
                self.tally.fail_row(errors);
            }
            (self.progress)(&self.tally);
        }
        if in_one {
            counted.apply(&mut **lock(conn)?)?;
        }
        Ok(self.tally)
    }

    /// A chunk in its own transaction; when a write fails there (a race with another
    /// writer), each of its rows in its own, planned again, so that only the rows that
    /// fail are lost.
    fn write_alone(&mut self, conn: &mut DbConnection, plan: Plan, rows: &[RowEdit]) -> Result<ChunkOutcome, AppError> {
        match transaction(conn, |conn| self.write_counted(conn, &plan)) {
            Ok(mut outcome) => {
                outcome.add(plan.settled);
                Ok(outcome)
            }
            Err(error) if !is_row_error(&error) && !error.is_concurrent_update() => Err(error),
            Err(_) => {
                let mut all = ChunkOutcome::default();
                for row in rows {
                    all.add(self.write_row_alone(conn, row)?);
                }
                Ok(all)
            }
        }
    }

    /// One row, planned and written in its own transaction; tried again after a race.
    fn write_row_alone(&mut self, conn: &mut DbConnection, row: &RowEdit) -> Result<ChunkOutcome, AppError> {
        let written = transaction(conn, |conn| {
            let plan = self.planner.plan(conn, std::slice::from_ref(row))?;
            let mut outcome = self.write_counted(conn, &plan)?;
            outcome.add(plan.settled);
            Ok(outcome)
        });
        match written {
            Ok(outcome) => Ok(outcome),
            Err(error) if is_row_error(&error) => {
                Ok(ChunkOutcome { failed: vec![errors_of(row.row, &error)], ..ChunkOutcome::default() })
            }
            Err(error) if error.is_concurrent_update() => self.write_row_alone(conn, row),
            Err(error) => Err(error),
        }
    }

    /// A plan written with its counts, in a transaction of its own.
    fn write_counted(&mut self, conn: &mut DbConnection, plan: &Plan) -> Result<ChunkOutcome, AppError> {
        let mut counted = Counted::default();
        let outcome = self.write(conn, plan, &mut counted)?;
        counted.apply(conn)?;
        Ok(outcome)
    }

    /// A plan written, with the rows it settled.
    fn write_planned(
        &mut self,
        conn: &mut DbConnection,
        plan: Plan,
        counted: &mut Counted,
    ) -> Result<ChunkOutcome, AppError> {
        let mut outcome = self.write(conn, &plan, counted)?;
        outcome.add(plan.settled);
        Ok(outcome)
    }

    /// Creates the plan's new customers and changes the others.
    fn write(&mut self, conn: &mut DbConnection, plan: &Plan, counted: &mut Counted) -> Result<ChunkOutcome, AppError> {
        let mut outcome = ChunkOutcome::default();
        lock_placements(conn, &self.planner.catalogue, &plan.creating)?;
        create(conn, &self.planner.catalogue, &self.provenance, &plan.creating, plan.at, counted)?;
        outcome.created += plan.creating.len() as u64;
        for change in &plan.changing {
            match self.apply(conn, change) {
                Ok(()) => outcome.updated += 1,
                Err(error) if is_row_error(&error) => outcome.failed.push(errors_of(change.row, &error)),
                Err(error) => return Err(error),
            }
        }
        Ok(outcome)
    }

    /// Changes one customer through the single-customer writes, in a savepoint: its
    /// moves (with the values of the scheme each move is in), then its fields and the
    /// rest of its values.
    fn apply(&self, conn: &mut DbConnection, change: &Change) -> Result<(), AppError> {
        let Catalogue { keys, schemes, .. } = &self.planner.catalogue;
        let provenance = &self.provenance;
        let restriction = self.planner.restriction;
        transaction(conn, |conn| {
            let mut rest = change.values.clone();
            for (scheme_code, target) in &change.moves {
                let scheme_id = schemes.get(scheme_code).map(|s| s.id);
                match target {
                    Some(category) => {
                        let of_scheme: BTreeMap<String, Json> = change
                            .values
                            .iter()
                            .filter(|(key, _)| keys.get(*key).map(|(id, _)| Some(*id)) == Some(scheme_id))
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect();
                        rest.retain(|key, _| !of_scheme.contains_key(key));
                        let field = format!("categories.{scheme_code}");
                        let assignment = assignments::Assignment {
                            customer: &change.code,
                            scheme: scheme_code,
                            category,
                            locked: None,
                            values: &of_scheme,
                            provenance,
                            expected: None,
                            restriction,
                            // A data load keeps what was planned for later.
                            pending: assignments::PendingRule::Keep,
                        };
                        assignments::assign(conn, assignment).map_err(|e| in_field(e, &field))?;
                    }
                    None => {
                        assignments::unassign(
                            conn,
                            &change.code,
                            scheme_code,
                            provenance,
                            None,
                            restriction,
                            assignments::PendingRule::Keep,
                        )?;
                    }
                }
            }
            let mut fields = change.fields.clone();
            if !rest.is_empty() {
                fields.attributes = Some(rest);
            }
            if fields.any() {
                customer_store::update(conn, &change.code, &fields, None, restriction)?;
            }
            Ok(())
        })
    }
}

/// The counts that an import's new customers add, gathered over chunks: an atomic
/// import writes them once, at its end (every chunk adds to the same few rows, which
/// would otherwise be locked and rewritten a thousand rows at a time); a chunk that
/// commits on its own, with itself.
#[derive(Default)]
struct Counted {
    customers: counts::CustomerDeltas,
    classification: ClassificationWrite,
}

impl Counted {
    fn apply(self, conn: &mut DbConnection) -> Result<(), AppError> {
        self.customers.apply(conn)?;
        self.classification.finish(conn, false)
    }
}

/// Locks, for the rest of the transaction on `conn`, the categories and schemes that
/// these new customers are placed in, as `assignments::assignable_category` and
/// `attribute_values::plan_move` do: no category gains children, and no definition changes,
/// until the import ends.
fn lock_placements(conn: &mut DbConnection, catalogue: &Catalogue, new: &[NewCustomer]) -> Result<(), AppError> {
    let mut category_ids = BTreeSet::new();
    let mut scheme_ids = BTreeSet::new();
    for (scheme_id, code, _) in new.iter().flat_map(|customer| &customer.placements) {
        let (category, _) = catalogue
            .categories
            .get(&(*scheme_id, code.clone()))
            .ok_or_else(|| AppError::internal(format!("category {code} went missing")))?;
        category_ids.insert(category.id);
        scheme_ids.insert(*scheme_id);
    }
    let category_ids: Vec<i64> = category_ids.into_iter().collect();
    lock_rows(conn, LockableTable::Categories, &category_ids, LockMode::Shared)?;
    lock_rows(conn, LockableTable::Schemes, &scheme_ids.into_iter().collect::<Vec<_>>(), LockMode::Shared)?;
    // The catalogue was read when the import began: a category deleted or stopped since
    // (committed before the lock above) must not take these customers. The rows of new
    // customers are written without foreign-key checks on MySQL, so nothing else would
    // notice; once locked, no delete or deactivation can come until the import ends.
    let taking: BTreeSet<i64> = categories::table
        .filter(categories::id.eq_any(&category_ids))
        .filter(categories::active.eq(true))
        .select(categories::id)
        .load::<i64>(conn)?
        .into_iter()
        .collect();
    if taking.len() == category_ids.len() {
        return Ok(());
    }
    if let Some(gone) = catalogue
        .categories
        .values()
        .map(|(category, _)| category)
        .find(|category| category_ids.contains(&category.id) && !taking.contains(&category.id))
    {
        let scheme = catalogue
            .scheme_by_id(gone.scheme_id)
            .map_or_else(|| gone.scheme_id.to_string(), |scheme| scheme.code.clone());
        return Err(AppError::new(
            ErrorCode::CategoryChanged,
            format!("category {} of scheme {scheme} was deleted or stopped taking customers while the import ran; nothing more was written (send the file again)", gone.code),
        ));
    }
    Ok(())
}

/// New customers, set-based, in categories locked already (`lock_placements`); what
/// they add to the counts goes to `counted`.
fn create(
    conn: &mut DbConnection,
    catalogue: &Catalogue,
    provenance: &Provenance,
    new: &[NewCustomer],
    at: chrono::NaiveDateTime,
    counted: &mut Counted,
) -> Result<(), AppError> {
    if new.is_empty() {
        return Ok(());
    }
    let rows: Vec<_> = new
        .iter()
        .map(|c| {
            let (classification, attributes) = c.snapshots.clone();
            (
                customers::code.eq(c.code.clone()),
                customers::name.eq(c.name.clone()),
                customers::short_name.eq(c.short_name.clone()),
                customers::tax_id.eq(c.tax_id.clone()),
                customers::contact_name.eq(c.contact_name.clone()),
                customers::phone.eq(c.phone.clone()),
                customers::email.eq(c.email.clone()),
                customers::address.eq(c.address.clone()),
                customers::status.eq(c.status.as_str()),
                customers::note.eq(c.note.clone()),
                customers::classification.eq(classification),
                customers::attributes.eq(attributes),
                customers::version.eq(1i64),
                customers::created_at.eq(at),
                customers::updated_at.eq(at),
            )
        })
        .collect();
    without_foreign_key_checks(conn, |conn| {
        crate::insert_many!(conn, customers::table, rows)?;
        let codes: Vec<&str> = new.iter().map(|c| c.code.as_str()).collect();
        events::record_customers_created(conn, at, &codes)?;
        let ids: HashMap<String, i64> = customers::table
            .filter(customers::code.eq_any(&codes))
            .select((customers::code, customers::id))
            .load::<(String, i64)>(conn)?
            .into_iter()
            .collect();
        let id_of = |code: &str| {
            ids.get(code)
                .copied()
                .ok_or_else(|| AppError::internal(format!("customer {code} was inserted and is not there")))
        };
        let all_ids: Vec<i64> = new.iter().map(|c| id_of(&c.code)).collect::<Result<_, _>>()?;
        counted.customers.add(&all_ids, 1);

        let by_default =
            Provenance::new(&provenance.actor, Source::Default, Some("default category of the scheme".into()));
        let mut placements = Vec::new();
        for (customer, id) in new.iter().zip(&all_ids) {
            for (scheme_id, code, named) in &customer.placements {
                let scheme = catalogue
                    .scheme_by_id(*scheme_id)
                    .ok_or_else(|| AppError::internal(format!("scheme {scheme_id} went missing")))?;
                let (category, _) = catalogue
                    .categories
                    .get(&(*scheme_id, code.clone()))
                    .ok_or_else(|| AppError::internal(format!("category {code} went missing")))?;
                let provenance = if *named { provenance } else { &by_default };
                placements.push(Placement {
                    customer_id: *id,
                    customer_code: &customer.code,
                    scheme,
                    category,
                    provenance,
                });
            }
        }
        counted.classification.place_new(conn, &placements, at)?;
        let values: Vec<(i64, &str, &Desired)> = new
            .iter()
            .zip(&all_ids)
            .filter(|(c, _)| !c.values.is_empty())
            .map(|(c, id)| (*id, c.code.as_str(), &c.values))
            .collect();
        attribute_values::insert_values(conn, &values)
    })
}
