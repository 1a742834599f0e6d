//! Reports (分类报表): the counters a change keeps, distributions and cross-tabs as they stand or rewound to a moment, journeys (升级/降级).

pub mod category_views;
pub mod counts;
pub mod grouping;
pub mod journeys;
pub mod past_standing;
pub mod reports;
pub mod sales_by_category;
pub mod scheme_counts;
pub mod transitions;
