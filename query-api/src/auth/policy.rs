//! Who may do what (docs/access.md).
//!
//! - An **owner** may do everything, in every project, and manages every user.
//! - An **admin** of a project edits that project (settings, API access, webhook secret,
//!   overrides), adds and removes its viewers, and may create a user as a viewer of it. They may
//!   reset the password of, or disable, only users all of whose memberships are in projects they
//!   administer. They cannot make anyone admin or owner, touch an owner, or change their own
//!   memberships.
//! - A **viewer** of a project reads it and writes nothing.
//!
//! Everyone may change their own password and manage their own API tokens.

use std::collections::BTreeMap;

use ksa_state::admin::{ProjectRole, User};

/// True when `user` may read the project.
pub fn sees(user: &User, project_id: i64) -> bool {
    user.is_owner || user.role_in(project_id).is_some()
}

/// True when `user` may change the project.
pub fn administers(user: &User, project_id: i64) -> bool {
    user.is_owner || user.role_in(project_id) == Some(ProjectRole::Admin)
}

/// True when `user` administers at least one project (or is an owner): they may open the users
/// page and the audit log.
pub fn administers_any(user: &User) -> bool {
    user.is_owner || user.memberships.iter().any(|m| m.role == ProjectRole::Admin)
}

/// True when `actor` may see `target` in the list of users: an owner sees everyone, an admin
/// the members of the projects they administer (and themselves).
pub fn sees_user(actor: &User, target: &User) -> bool {
    actor.is_owner || actor.id == target.id || target.memberships.iter().any(|m| administers(actor, m.project_id))
}

/// Why `actor` may not reset the password of, or disable, `target`, if they may not.
pub fn may_manage(actor: &User, target: &User) -> Result<(), String> {
    if actor.is_owner {
        return Ok(());
    }
    if target.is_owner {
        return Err("only an owner may change an owner".into());
    }
    if actor.id == target.id {
        return Err("change your own password at /api/me/password".into());
    }
    if target.memberships.is_empty() || !target.memberships.iter().all(|m| administers(actor, m.project_id)) {
        return Err("this user is also a member of projects you do not administer".into());
    }
    Ok(())
}

/// The memberships `target` ends up with when `actor` asks for `requested` within the projects
/// `requested` names, or why that is not allowed. `current` are the target's memberships now
/// (none for a new user).
///
/// An owner sets any memberships. An admin changes only the projects they administer, and
/// there only viewers: memberships elsewhere stay as they are, an admin membership can be
/// neither made nor removed, and their own memberships not at all.
pub fn memberships(
    actor: &User,
    target_id: Option<i64>,
    current: &[(i64, ProjectRole)],
    requested: &[(i64, ProjectRole)],
) -> Result<Vec<(i64, ProjectRole)>, String> {
    let mut requested_map = BTreeMap::new();
    for (project_id, role) in requested {
        if requested_map.insert(*project_id, *role).is_some() {
            return Err("a project is named twice".into());
        }
    }
    if actor.is_owner {
        return Ok(requested_map.into_iter().collect());
    }
    if target_id == Some(actor.id) {
        return Err("you cannot change your own project memberships".into());
    }
    let current_map: BTreeMap<i64, ProjectRole> = current.iter().copied().collect();
    for (project_id, role) in &requested_map {
        if !administers(actor, *project_id) {
            return Err("you can only grant access to projects you administer".into());
        }
        if *role == ProjectRole::Admin && current_map.get(project_id) != Some(&ProjectRole::Admin) {
            return Err("only an owner can make someone an admin".into());
        }
    }
    let mut result = BTreeMap::new();
    for (project_id, role) in &current_map {
        if !administers(actor, *project_id) {
            result.insert(*project_id, *role);
        } else if *role == ProjectRole::Admin {
            if requested_map.get(project_id) != Some(&ProjectRole::Admin) {
                return Err("only an owner can remove an admin".into());
            }
            result.insert(*project_id, *role);
        }
    }
    for (project_id, role) in requested_map {
        result.insert(project_id, role);
    }
    Ok(result.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use ksa_schemas::Timestamp;
    use ksa_state::admin::Membership;

    use super::*;

    fn user(id: i64, owner: bool, memberships: &[(i64, ProjectRole)]) -> User {
        User {
            id,
            login: format!("u{id}"),
            email: None,
            is_owner: owner,
            is_active: true,
            token_version: 0,
            created_at: Timestamp::from_micros(0),
            updated_at: Timestamp::from_micros(0),
            memberships: memberships.iter().map(|(p, r)| Membership { project_id: *p, slug: format!("p{p}"), role: *r }).collect(),
        }
    }

    use ProjectRole::{Admin, Viewer};

    #[test]
    fn admins_grant_only_viewer_access_to_their_own_projects() {
        let admin = user(1, false, &[(10, Admin), (11, Viewer)]);
        let target = [(12, Viewer)];
        assert_eq!(memberships(&admin, Some(2), &target, &[(10, Viewer)]), Ok(vec![(10, Viewer), (12, Viewer)]));
        assert!(memberships(&admin, Some(2), &target, &[(10, Admin)]).is_err(), "no admins made");
        assert!(memberships(&admin, Some(2), &target, &[(11, Viewer)]).is_err(), "11 is not theirs to grant");
        assert!(memberships(&admin, Some(1), &[], &[(10, Viewer)]).is_err(), "not their own memberships");
        // Removing a viewer of their project: the request no longer names it.
        assert_eq!(memberships(&admin, Some(2), &[(10, Viewer), (12, Viewer)], &[]), Ok(vec![(12, Viewer)]));
        // Another admin of their project stays an admin.
        assert!(memberships(&admin, Some(3), &[(10, Admin)], &[]).is_err());
        assert_eq!(memberships(&admin, Some(3), &[(10, Admin)], &[(10, Admin)]), Ok(vec![(10, Admin)]));
    }

    #[test]
    fn owners_set_any_memberships() {
        let owner = user(1, true, &[]);
        assert_eq!(memberships(&owner, Some(2), &[(5, Viewer)], &[(6, Admin)]), Ok(vec![(6, Admin)]));
        assert!(memberships(&owner, Some(2), &[], &[(6, Admin), (6, Viewer)]).is_err());
    }

    #[test]
    fn admins_manage_only_users_wholly_inside_their_projects() {
        let admin = user(1, false, &[(10, Admin), (11, Admin)]);
        assert!(may_manage(&admin, &user(2, false, &[(10, Viewer), (11, Viewer)])).is_ok());
        assert!(may_manage(&admin, &user(3, false, &[(10, Viewer), (12, Viewer)])).is_err());
        assert!(may_manage(&admin, &user(4, true, &[(10, Viewer)])).is_err(), "never an owner");
        assert!(may_manage(&admin, &user(5, false, &[])).is_err(), "a user of no project is the owners'");
        assert!(may_manage(&admin, &admin).is_err());
        assert!(may_manage(&user(9, true, &[]), &user(4, true, &[])).is_ok());
    }

    #[test]
    fn visibility_follows_membership() {
        let viewer = user(1, false, &[(10, Viewer)]);
        assert!(sees(&viewer, 10) && !sees(&viewer, 11));
        assert!(!administers(&viewer, 10));
        assert!(!administers_any(&viewer));
        let admin = user(2, false, &[(10, Admin)]);
        assert!(sees_user(&admin, &viewer));
        assert!(!sees_user(&admin, &user(3, false, &[(11, Viewer)])));
    }
}
