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
    }
}
