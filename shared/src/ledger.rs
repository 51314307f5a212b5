//! The words of the ledger and of `data_versions`, as types: the status of a run
//! (`etl_runs.status`), the outcome of a file (`etl_files.status` and the run report)
//! and the keys of `data_versions`. Each is stored and serialised as the text the
//! migrations' CHECK constraints name (the keys of `data_versions`, [`Versioned`], are
//! declared with the datasets); [`text_enum!`] gives a type that text form
//! (`as_str`, `Display`, `FromStr`, serde and diesel `Text`), so neither binary compares
//! status strings.

/// Declares a fieldless enum stored as text: `as_str`, `Display`, `FromStr` (an unknown
/// word is an error naming it), `Serialize` as the text, and diesel `ToSql`/`FromSql`
/// for `Text` on PostgreSQL. Comparing with a `&str` compares the text form. The diesel
/// parts are left out where the expanding crate sets `cfg(coinflow_pure)` (the fuzz
/// crate, which has no diesel).
#[macro_export]
macro_rules! text_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal,)+ }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[cfg_attr(
            not(coinflow_pure),
            derive(::diesel::expression::AsExpression, ::diesel::deserialize::FromSqlRow),
            diesel(sql_type = ::diesel::sql_types::Text)
        )]
        $vis enum $name { $($(#[$vmeta])* $variant,)+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The text form, as stored and serialised.
            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text,)+ }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = String;

            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(format!(concat!("unknown ", stringify!($name), " {:?}"), other)),
                }
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        #[cfg(not(coinflow_pure))]
        impl ::diesel::serialize::ToSql<::diesel::sql_types::Text, ::diesel::pg::Pg> for $name {
            fn to_sql<'b>(
                &'b self,
                out: &mut ::diesel::serialize::Output<'b, '_, ::diesel::pg::Pg>,
            ) -> ::diesel::serialize::Result {
                <str as ::diesel::serialize::ToSql<::diesel::sql_types::Text, ::diesel::pg::Pg>>::to_sql(
                    self.as_str(),
                    out,
                )
            }
        }

        #[cfg(not(coinflow_pure))]
        impl ::diesel::deserialize::FromSql<::diesel::sql_types::Text, ::diesel::pg::Pg> for $name {
            fn from_sql(
                bytes: ::diesel::pg::PgValue<'_>,
            ) -> ::diesel::deserialize::Result<Self> {
                let text = <String as ::diesel::deserialize::FromSql<
                    ::diesel::sql_types::Text,
                    ::diesel::pg::Pg,
                >>::from_sql(bytes)?;
                text.parse().map_err(Into::into)
            }
        }
    };
}

text_enum! {
    /// Where a run stands (`etl_runs.status`, and the run report's `status`).
    #[derive(Default)]
    pub enum RunStatus {
        /// Registered, not finished (or its process ended: see `Abandoned`). The status
        /// of a report until its run finishes.
        #[default]
        Running => "running",
        /// Every file loaded, was skipped or was unrecognized.
        Ok => "ok",
        /// Committed, with at least one file set aside.
        Partial => "partial",
        /// Nothing of it was committed.
        Failed => "failed",
        /// Left running by a process that ended; marked by the next run.
        Abandoned => "abandoned",
    }
}

text_enum! {
    /// What became of one input file (`etl_files.status`, and a file report's `status`).
    #[derive(Default)]
    pub enum FileStatus {
        /// Its rows were loaded (each counted loaded, duplicate, updated or rejected).
        /// The status of a file report being built, until its outcome is known.
        #[default]
        Loaded => "loaded",
        /// Over its reject budget: none of its rows loaded.
        SetAside => "set_aside",
        /// Its header names no dataset: nothing read.
        Unrecognized => "unrecognized",
        /// Unchanged since it was loaded: not read. In reports only, never in the ledger.
        Skipped => "skipped",
    }
}

/// The keys of `data_versions` live with the datasets they version.
pub use crate::dataset::Versioned;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_reads_back_from_its_text() {
        for s in RunStatus::ALL {
            assert_eq!(s.as_str().parse::<RunStatus>(), Ok(*s));
        }
        for s in FileStatus::ALL {
            assert_eq!(s.as_str().parse::<FileStatus>(), Ok(*s));
        }
    }

    #[test]
    fn an_unknown_status_is_an_error_naming_it() {
        assert_eq!(
            "done".parse::<RunStatus>(),
            Err("unknown RunStatus \"done\"".to_string())
        );
    }

    #[test]
    fn statuses_serialise_as_their_text() {
        assert_eq!(
            serde_json::to_string(&FileStatus::SetAside).ok().as_deref(),
            Some("\"set_aside\"")
        );
        assert_eq!(RunStatus::Partial.to_string(), "partial");
    }
}
