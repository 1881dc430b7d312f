//! Versioned schema migrations, the same list for both backends (`migrations/sqlite/NNNN_*.sql`
//! and `migrations/postgres/NNNN_*.sql` differ only where the SQL dialects do). Each backend
//! applies [`pending`] migrations in one transaction when a store is opened, and records each
//! version in `schema_migrations`.

/// One schema version.
#[derive(Debug)]
pub(crate) struct Migration {
    /// 1, 2, …: applied in order, each once.
    pub(crate) version: i64,
    /// What it does.
    pub(crate) name: &'static str,
    /// Its SQL for SQLite.
    pub(crate) sqlite: &'static str,
    /// Its SQL for PostgreSQL.
    pub(crate) postgres: &'static str,
}

/// Every migration, in order.
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "certificates",
        sqlite: include_str!("migrations/sqlite/0001_certificates.sql"),
        postgres: include_str!("migrations/postgres/0001_certificates.sql"),
    },
    Migration {
        version: 2,
        name: "acme",
        sqlite: include_str!("migrations/sqlite/0002_acme.sql"),
        postgres: include_str!("migrations/postgres/0002_acme.sql"),
    },
    Migration {
        version: 3,
        name: "acme_replaces",
        sqlite: include_str!("migrations/sqlite/0003_acme_replaces.sql"),
        postgres: include_str!("migrations/postgres/0003_acme_replaces.sql"),
    },
];

/// The table that records applied versions (the same in both dialects).
pub(crate) const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)";

/// The migrations to apply to a store at which `applied` versions were applied, or why the
/// store cannot be used: versions must be 1, 2, … without gaps, and none newer than this build
/// knows (a newer Tessera's store is refused, not damaged).
pub(crate) fn pending(applied: &[i64]) -> Result<&'static [Migration], String> {
    let latest = MIGRATIONS.last().map_or(0, |m| m.version);
    for (i, version) in applied.iter().enumerate() {
        let expected = i64::try_from(i).unwrap_or(i64::MAX).saturating_add(1);
        if *version > latest {
            return Err(format!(
                "its schema version {version} is newer than this Tessera knows (up to {latest}); use a newer Tessera"
            ));
        }
        if *version != expected {
            return Err(format!(
                "its schema versions are not 1 to {} in order (found {version} at place {expected})",
                applied.len()
            ));
        }
    }
    Ok(MIGRATIONS.get(applied.len()..).unwrap_or(&[]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_applied_in_order_once_and_newer_ones_refused() {
        assert_eq!(pending(&[]).unwrap().len(), MIGRATIONS.len());
        assert_eq!(pending(&[1]).unwrap().len(), MIGRATIONS.len() - 1);
        let newer = pending(&[1, 2, 3, 99]).unwrap_err();
        assert!(newer.contains("newer than this Tessera knows"), "{newer}");
        let repeated = pending(&[1, 1]).unwrap_err();
        assert!(repeated.contains("not 1 to 2 in order"), "{repeated}");
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i64 + 1, "{}", m.name);
        }
    }

    #[test]
    fn both_dialects_have_the_same_tables_and_indexes() {
        let names = |sql: &str| -> Vec<String> {
            sql.lines()
                .filter_map(|l| {
                    let l = l.trim();
                    let rest = l
                        .strip_prefix("CREATE TABLE ")
                        .or_else(|| l.strip_prefix("CREATE INDEX "))
                        .or_else(|| l.strip_prefix("CREATE UNIQUE INDEX "))?;
                    rest.split_whitespace().next().map(str::to_string)
                })
                .collect()
        };
        for m in MIGRATIONS {
            assert_eq!(names(m.sqlite), names(m.postgres), "{}", m.name);
            assert!(!names(m.sqlite).is_empty());
            let columns = |sql: &str| sql.lines().filter(|l| l.starts_with("    ")).count();
            assert_eq!(columns(m.sqlite), columns(m.postgres), "{}", m.name);
        }
    }
}
