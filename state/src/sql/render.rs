//! Renders a statement's markers (see the module above) for one dialect.

/// The two SQL dialects of the state store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite = 0,
    Postgres = 1,
}

/// SQLite's `now`, as the schema's defaults write it: microseconds, to the millisecond.
const SQLITE_NOW: &str = "(CAST(ROUND(unixepoch('subsec') * 1000) AS INTEGER) * 1000)";

/// The template with every known marker replaced; braces that open no known marker stay.
pub(crate) fn render(template: &str, dialect: Dialect) -> String {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            out.push_str(&rest[open..]);
            return out;
        };
        match marker(&after[..close], dialect) {
            Some(text) => {
                out.push_str(&text);
                rest = &after[close + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn marker(inner: &str, dialect: Dialect) -> Option<String> {
    let (name, arg) = inner.split_once(':').unwrap_or((inner, ""));
    let pg = dialect == Dialect::Postgres;
    Some(match (name, arg.trim()) {
        ("at", param) if !param.is_empty() => {
            if pg {
                format!("(TIMESTAMPTZ 'epoch' + {param}::bigint * INTERVAL '1 microsecond')")
            } else {
                param.to_owned()
            }
        }
        ("micros", column) if !column.is_empty() => {
            if pg {
                format!("(EXTRACT(EPOCH FROM {column}) * 1000000)::bigint")
            } else {
                column.to_owned()
            }
        }
        ("ids", param) if !param.is_empty() => {
            if pg {
                format!("= ANY({param}::bigint[])")
            } else {
                format!("IN (SELECT value FROM json_each({param}))")
            }
        }
        ("json", param) if !param.is_empty() => {
            if pg {
                format!("{param}::jsonb")
            } else {
                param.to_owned()
            }
        }
        ("text", column) if !column.is_empty() => {
            if pg {
                format!("{column}::text")
            } else {
                column.to_owned()
            }
        }
        ("now", "") => (if pg { "now()" } else { SQLITE_NOW }).to_owned(),
        ("least", "") => (if pg { "LEAST" } else { "min" }).to_owned(),
        ("greatest", "") => (if pg { "GREATEST" } else { "max" }).to_owned(),
        ("for_update", "") => (if pg { "FOR UPDATE" } else { "" }).to_owned(),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_become_each_dialects_spelling() {
        let template = "UPDATE t SET at = {at:$1}, seen = {now} WHERE id {ids:$2} RETURNING {micros:at}";
        assert_eq!(
            render(template, Dialect::Sqlite),
            format!("UPDATE t SET at = $1, seen = {SQLITE_NOW} WHERE id IN (SELECT value FROM json_each($2)) RETURNING at")
        );
        assert_eq!(
            render(template, Dialect::Postgres),
            "UPDATE t SET at = (TIMESTAMPTZ 'epoch' + $1::bigint * INTERVAL '1 microsecond'), seen = now() \
             WHERE id = ANY($2::bigint[]) RETURNING (EXTRACT(EPOCH FROM at) * 1000000)::bigint"
        );
    }

    #[test]
    fn braces_that_are_not_markers_stay() {
        assert_eq!(render("SELECT '{}', '{a:b}' FROM t {for_update}", Dialect::Sqlite), "SELECT '{}', '{a:b}' FROM t ");
        assert_eq!(render("SELECT '{' || x", Dialect::Postgres), "SELECT '{' || x");
    }
}
