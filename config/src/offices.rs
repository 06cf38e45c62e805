//! `[offices.<id>]`: fixed recipients such as the city party-building office.
//!
//! Offices are sorted by id; that order is `EngineConfig::offices`, and roles
//! `office:<id>` refer to an office by its index in it ([`OfficeIdx`]).

use std::collections::BTreeMap;

use redcloud_engine::policy::OfficeIdx;

use crate::error::ConfigError;
use crate::raw::{RawContacts, RawOffice};
use crate::secret::Secret;

/// Longest office id, in characters.
pub const MAX_OFFICE_ID_CHARS: usize = 64;

/// A configured office.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Office {
    /// The id, as in `office:<id>` (ASCII letters, digits, `_` and `-`).
    pub id: String,
    /// Display name (`市委党建办`), if configured.
    pub name: Option<String>,
    /// Where to reach the office.
    pub contacts: OfficeContacts,
}

/// An office's contacts, each optional; the values never print.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OfficeContacts {
    /// Phone number for SMS.
    pub sms: Option<Secret>,
    /// Push device token.
    pub push: Option<Secret>,
    /// Group chat robot webhook or key.
    pub group: Option<Secret>,
}

/// Looks offices up by id while policies are validated.
#[derive(Debug)]
pub(crate) struct OfficeTable<'a> {
    ids: &'a [String],
}

impl<'a> OfficeTable<'a> {
    pub(crate) fn new(ids: &'a [String]) -> Self {
        OfficeTable { ids }
    }

    /// The index of office `id`, or why there is none.
    pub(crate) fn lookup(&self, id: &str) -> Result<OfficeIdx, String> {
        match self.ids.binary_search_by(|probe| probe.as_str().cmp(id)) {
            Ok(i) => Ok(i as OfficeIdx),
            Err(_) if self.ids.is_empty() => Err(format!(
                "office \"{id}\" is not configured (no offices are configured; add an [offices.{id}] table)"
            )),
            Err(_) => Err(format!(
                "office \"{id}\" is not configured (known: {})",
                self.ids.join(", ")
            )),
        }
    }
}

/// Validates `[offices.*]`: returns the ids (sorted) and the offices, in the
/// same order.
pub(crate) fn validate_offices(
    raw: BTreeMap<String, RawOffice>,
) -> Result<(Vec<String>, Vec<Office>), ConfigError> {
    if raw.len() > usize::from(OfficeIdx::MAX) + 1 {
        return Err(ConfigError::invalid(
            "offices",
            format!(
                "at most {} offices can be configured",
                usize::from(OfficeIdx::MAX) + 1
            ),
        ));
    }
    let mut ids = Vec::with_capacity(raw.len());
    let mut offices = Vec::with_capacity(raw.len());
    for (id, office) in raw {
        let path = office_path(&id);
        check_office_id(&id).map_err(|why| ConfigError::invalid(&path, why))?;
        if let Some(name) = &office.name {
            if name.trim().is_empty() {
                return Err(ConfigError::invalid(
                    format!("{path}.name"),
                    "must not be empty (leave the key out instead)",
                ));
            }
        }
        let RawContacts { sms, push, group } = office.contacts;
        for (key, value) in [("sms", &sms), ("push", &push), ("group", &group)] {
            if value.as_ref().is_some_and(|v| v.expose().trim().is_empty()) {
                return Err(ConfigError::invalid(
                    format!("{path}.contacts.{key}"),
                    "must not be empty (leave the key out instead)",
                ));
            }
        }
        ids.push(id.clone());
        offices.push(Office {
            id,
            name: office.name,
            contacts: OfficeContacts { sms, push, group },
        });
    }
    Ok((ids, offices))
}

fn office_path(id: &str) -> String {
    if !id.is_empty() && id.chars().all(is_id_char) {
        format!("offices.{id}")
    } else {
        format!("offices.{id:?}")
    }
}

fn is_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

fn check_office_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("an office id must not be empty".into());
    }
    if id.chars().count() > MAX_OFFICE_ID_CHARS {
        return Err(format!(
            "an office id must be at most {MAX_OFFICE_ID_CHARS} characters long"
        ));
    }
    if !id.chars().all(is_id_char) {
        return Err(format!(
            "office id {id:?} may only contain ASCII letters, digits, `_` and `-`"
        ));
    }
    Ok(())
}
