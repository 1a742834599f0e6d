//! Words of the change feed: what an event reports, which events a reader asks for,
//! and where in the feed a reader stands.

use super::FieldError;

/// What an event reports. The names are part of the API and never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    CustomerCreated,
    CustomerUpdated,
    CustomerDeleted,
    CustomerMerged,
    ClassificationChanged,
    SchemeCreated,
    SchemeUpdated,
    SchemeDeleted,
    CategoryCreated,
    CategoryUpdated,
    CategoryDeleted,
    ClassificationRunFinished,
    WebhookDisabled,
    PendingChangeFailed,
}

impl EventType {
    pub const ALL: [EventType; 14] = [
        EventType::CustomerCreated,
        EventType::CustomerUpdated,
        EventType::CustomerDeleted,
        EventType::CustomerMerged,
        EventType::ClassificationChanged,
        EventType::SchemeCreated,
        EventType::SchemeUpdated,
        EventType::SchemeDeleted,
        EventType::CategoryCreated,
        EventType::CategoryUpdated,
        EventType::CategoryDeleted,
        EventType::ClassificationRunFinished,
        EventType::WebhookDisabled,
        EventType::PendingChangeFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::CustomerCreated => "customer.created",
            EventType::CustomerUpdated => "customer.updated",
            EventType::CustomerDeleted => "customer.deleted",
            EventType::CustomerMerged => "customer.merged",
            EventType::ClassificationChanged => "classification.changed",
            EventType::SchemeCreated => "scheme.created",
            EventType::SchemeUpdated => "scheme.updated",
            EventType::SchemeDeleted => "scheme.deleted",
            EventType::CategoryCreated => "category.created",
            EventType::CategoryUpdated => "category.updated",
            EventType::CategoryDeleted => "category.deleted",
            EventType::ClassificationRunFinished => "classification_run.finished",
            EventType::WebhookDisabled => "webhook.disabled",
            EventType::PendingChangeFailed => "pending_change.failed",
        }
    }

    /// Whether its data names a customer (`customer`).
    pub fn names_customer(self) -> bool {
        matches!(
            self,
            EventType::CustomerCreated
                | EventType::CustomerUpdated
                | EventType::CustomerDeleted
                | EventType::CustomerMerged
                | EventType::ClassificationChanged
                | EventType::PendingChangeFailed
        )
    }

    /// Whether it reports a change of the classification's structure (schemes, categories).
    pub fn is_structure(self) -> bool {
        matches!(
            self,
            EventType::SchemeCreated
                | EventType::SchemeUpdated
                | EventType::SchemeDeleted
                | EventType::CategoryCreated
                | EventType::CategoryUpdated
                | EventType::CategoryDeleted
        )
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

/// The event types a reader asks for (`types=classification.changed,customer.*`):
/// names, and families written `family.*`. Empty: every type.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TypeFilter(Vec<EventType>);

impl TypeFilter {
    pub fn parse(field: &str, text: &str) -> Result<Self, FieldError> {
        let mut chosen = Vec::new();
        for item in text.split(',').map(str::trim).filter(|item| !item.is_empty()) {
            let matched: Vec<EventType> = match item.strip_suffix(".*") {
                Some(family) => {
                    EventType::ALL.into_iter().filter(|kind| kind.as_str().split('.').next() == Some(family)).collect()
                }
                None => EventType::from_name(item).into_iter().collect(),
            };
            if matched.is_empty() {
                let known: Vec<&str> = EventType::ALL.iter().map(|kind| kind.as_str()).collect();
                return Err(FieldError::new(
                    field,
                    format!("unknown event type {item}; known: {} (or family.*)", known.join(", ")),
                ));
            }
            for kind in matched {
                if !chosen.contains(&kind) {
                    chosen.push(kind);
                }
            }
        }
        Ok(Self(chosen))
    }

    /// The names to read, or `None` for every type.
    pub fn names(&self) -> Option<Vec<&'static str>> {
        (!self.0.is_empty()).then(|| self.0.iter().map(|kind| kind.as_str()).collect())
    }
}

/// Where a reader stands: before the oldest event kept, after the newest one, or
/// after a position it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cursor {
    Start,
    Latest,
    After(i64),
}

impl Cursor {
    pub fn parse(field: &str, text: Option<&str>) -> Result<Self, FieldError> {
        match text.map(str::trim) {
            None => Ok(Cursor::Start),
            Some("latest") => Ok(Cursor::Latest),
            Some(digits) => match digits.parse::<i64>() {
                Ok(position) if position >= 0 && !digits.starts_with('+') => Ok(Cursor::After(position)),
                _ => Err(FieldError::new(field, "a cursor is a next_cursor this feed gave, or \"latest\"")),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_reads_back_as_its_type() {
        for kind in EventType::ALL {
            assert_eq!(EventType::from_name(kind.as_str()), Some(kind));
        }
    }

    #[test]
    fn a_family_takes_every_type_of_it_and_nothing_else() {
        let filter = TypeFilter::parse("types", "classification.changed, customer.*").unwrap();
        assert_eq!(
            filter.names().unwrap(),
            ["classification.changed", "customer.created", "customer.updated", "customer.deleted", "customer.merged"]
        );
        let runs = TypeFilter::parse("types", "classification_run.*").unwrap();
        assert_eq!(
            runs.names().unwrap(),
            ["classification_run.finished"],
            "classification.* must not reach classification_run"
        );
        assert_eq!(TypeFilter::parse("types", "").unwrap().names(), None);
    }

    #[test]
    fn an_unknown_type_or_family_is_refused_with_the_known_ones() {
        for bad in ["customer.renamed", "nothing.*", "customer"] {
            let error = TypeFilter::parse("types", bad).unwrap_err();
            assert!(error.message.contains("customer.created"), "{bad}: {}", error.message);
        }
    }

    #[test]
    fn cursors_are_positions_or_latest() {
        assert_eq!(Cursor::parse("after", None), Ok(Cursor::Start));
        assert_eq!(Cursor::parse("after", Some("latest")), Ok(Cursor::Latest));
        assert_eq!(Cursor::parse("after", Some("42")), Ok(Cursor::After(42)));
        for bad in ["", "-1", "+3", "abc", "1.5"] {
            assert!(Cursor::parse("after", Some(bad)).is_err(), "{bad}");
        }
    }
}
