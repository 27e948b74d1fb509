//! The persona attributes a segment may filter and facet on: the one
//! catalogue that the filter validation and both search backends share.

/// The type of a filterable persona attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    /// One string; equality is case-insensitive on every backend.
    Text,
    /// A number (ages, scores, counts).
    Number,
    Bool,
    /// An RFC 3339 time in filters; seconds since the epoch in the index.
    Time,
    /// A list of strings; a condition holds when any element satisfies it.
    TextList,
}

/// One attribute: its name in filters and documents, its type, and whether
/// `facets(fields:)` may count its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    pub name: &'static str,
    pub ty: FieldType,
    pub facet: bool,
}

const fn f(name: &'static str, ty: FieldType, facet: bool) -> Field {
    Field { name, ty, facet }
}

/// Every filterable attribute, in the order documentation lists them.
pub const FIELDS: &[Field] = &[
    f("openid", FieldType::Text, false),
    f("city", FieldType::Text, true),
    f("province", FieldType::Text, true),
    f("gender", FieldType::Text, true),
    f("age", FieldType::Number, true),
    f("tags", FieldType::TextList, true),
    f("interests", FieldType::TextList, true),
    f("keywords", FieldType::TextList, true),
    f("sentiment", FieldType::Number, false),
    f("sentimentLabel", FieldType::Text, true),
    f("activity", FieldType::Number, false),
    f("reach", FieldType::Number, false),
    f("degree", FieldType::Number, true),
    f("influence", FieldType::Number, false),
    f("subscribed", FieldType::Bool, true),
    f("consent", FieldType::Bool, true),
    f("lastActiveAt", FieldType::Time, false),
    f("subscribedAt", FieldType::Time, false),
];

/// The member id: not for users' filters (not in `FIELDS`), but lookalikes
/// leave their seed members out with it.
pub const MEMBER_ID: Field = f("id", FieldType::Text, false);

/// Looks a field up by its filter name.
pub fn field(name: &str) -> Option<&'static Field> {
    FIELDS.iter().find(|f| f.name == name)
}

/// Names for error messages.
pub fn names(facet_only: bool) -> String {
    FIELDS
        .iter()
        .filter(|f| !facet_only || f.facet)
        .map(|f| f.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The most values a facet reports (the most frequent first).
pub const MAX_FACET_VALUES: usize = 100;

/// Formats a facet value the same way on every backend.
pub fn format_number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}
