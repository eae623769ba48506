//! Stage names derived from a step's own type name.

/// The name of a step's function: `my_crate::steps::caster<I>` gives
/// `caster`; a closure gives the name of the function that made it
/// (`cast(str)` returning a closure gives `cast`).
pub(crate) fn step_name<F>() -> String {
    name_from_type(std::any::type_name::<F>())
}

/// True if `F` is a closure: its name is its enclosing function's, shared
/// by every closure of that function.
pub(crate) fn is_closure<F>() -> bool {
    std::any::type_name::<F>().ends_with("{{closure}}")
}

/// `base`, or `base#2`, `base#3`... : the first that `taken` does not hold.
pub(crate) fn unique_name(base: String, taken: &[String]) -> String {
    if !taken.contains(&base) {
        return base;
    }
    (2..)
        .map(|n| format!("{base}#{n}"))
        .find(|name| !taken.contains(name))
        .expect("a free suffix")
}

fn name_from_type(full: &str) -> String {
    // Drop generic arguments, which may themselves contain `::`.
    let mut plain = String::with_capacity(full.len());
    let mut depth = 0usize;
    for c in full.chars() {
        match c {
            '<' => depth += 1,
            '>' => depth = depth.saturating_sub(1),
            _ if depth == 0 => plain.push(c),
            _ => {}
        }
    }
    plain
        .split("::")
        .filter(|seg| !seg.is_empty() && !seg.starts_with('{'))
        .last()
        .unwrap_or("step")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::name_from_type;

    #[test]
    fn names_functions_generics_and_closures() {
        assert_eq!(name_from_type("debugging::flip"), "flip");
        assert_eq!(
            name_from_type("debugging::caster<paipa::iter::Probe<core::ops::Range<u32>>>"),
            "caster"
        );
        assert_eq!(name_from_type("debugging::cast<u32>::{{closure}}"), "cast");
        assert_eq!(name_from_type("paipa::iter::steps::chunk::{{closure}}"), "chunk");
    }

    #[test]
    fn repeated_names_get_an_index_suffix() {
        use super::unique_name;
        let taken = vec!["source".to_string(), "main".to_string(), "main#2".to_string()];
        assert_eq!(unique_name("main".into(), &taken), "main#3");
        assert_eq!(unique_name("other".into(), &taken), "other");
        assert_eq!(unique_name("main#2".into(), &taken[..2]), "main#2");
    }
}
