//! Metric labels written once: [`metric_labels!`] gives an enum its `label()` and its `LABELS`
//! from one list of variants and labels, so the series a metric registers at start and the label
//! a value reports cannot drift apart, and a variant without a label does not compile.

/// `metric_labels!(Enum { Variant => "label", ... })`: `Enum::LABELS` (every label once, in
/// order) and `Enum::label(&self)`. The match it writes is exhaustive.
macro_rules! metric_labels {
    ($ty:ident { $($variant:ident => $label:literal),+ $(,)? }) => {
        impl $ty {
            pub const LABELS: &'static [&'static str] = &[$($label),+];

            /// The low-cardinality metric label.
            pub fn label(&self) -> &'static str {
                match self {
                    $($ty::$variant { .. } => $label),+
                }
            }
        }
    };
}

pub(crate) use metric_labels;

#[cfg(test)]
mod tests {
    #[derive(Debug)]
    #[allow(dead_code)]
    enum Shapes {
        Unit,
        Tuple(u8),
        Struct { field: u8 },
    }

    super::metric_labels!(Shapes { Unit => "unit", Tuple => "tuple", Struct => "struct" });

    #[test]
    fn every_shape_of_variant_gets_its_label_and_the_list_is_in_order() {
        assert_eq!(Shapes::LABELS, ["unit", "tuple", "struct"]);
        assert_eq!(Shapes::Unit.label(), "unit");
        assert_eq!(Shapes::Tuple(1).label(), "tuple");
        assert_eq!(Shapes::Struct { field: 1 }.label(), "struct");
    }
}
