//! Words of the assignment history.

labelled_enum! {
    /// What made a change of category.
    pub enum Source {
        /// A person or a client, through the API.
        Manual = "manual",
        /// A classification run.
        Rule = "rule",
        /// An import.
        Import = "import",
        /// Two customers merged into one.
        Merge = "merge",
        /// The scheme's default category, given to a new customer.
        Default = "default",
        /// A category's customers moved to another when the standard changed (分类标准更新).
        Remap = "remap",
        /// A change asked for earlier, applied when it took effect (`effective_at`).
        Scheduled = "scheduled",
    }
}

labelled_enum! {
    /// Which way a change of category went (客户升级/降级). Fixed when the change is
    /// made: a later change of ranks does not rewrite the past.
    pub enum Direction {
        /// To a category of a higher rank, in an ordered scheme.
        Up = "up",
        /// To a category of a lower rank, in an ordered scheme.
        Down = "down",
        /// Same rank, a category without a rank, or a scheme that is not ordered.
        Lateral = "lateral",
        /// From no category.
        In = "in",
        /// To no category.
        Out = "out",
    }
}

impl Direction {
    /// The direction of a move from `from` to `to` (`None`: no category), given each
    /// category's rank (`None` where it has none, or the scheme is not ordered).
    pub fn of(from: Option<Option<i32>>, to: Option<Option<i32>>) -> Direction {
        match (from, to) {
            (None, _) => Direction::In,
            (_, None) => Direction::Out,
            (Some(Some(from)), Some(Some(to))) if to > from => Direction::Up,
            (Some(Some(from)), Some(Some(to))) if to < from => Direction::Down,
            _ => Direction::Lateral,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Direction;

    #[test]
    fn directions_follow_ranks_and_presence() {
        assert_eq!(Direction::of(None, Some(Some(3))), Direction::In);
        assert_eq!(Direction::of(None, None), Direction::In);
        assert_eq!(Direction::of(Some(Some(3)), None), Direction::Out);
        assert_eq!(Direction::of(Some(Some(1)), Some(Some(3))), Direction::Up);
        assert_eq!(Direction::of(Some(Some(3)), Some(Some(2))), Direction::Down);
        assert_eq!(Direction::of(Some(Some(2)), Some(Some(2))), Direction::Lateral);
        assert_eq!(Direction::of(Some(None), Some(Some(2))), Direction::Lateral, "a category without a rank");
    }
}
